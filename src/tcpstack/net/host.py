"""tcpstack as a host on a real network: a namespace + TUN, Endpoints, a loop, apps.

    with NetHost.create(NetnsConfig(name="demo", tun="demo0")) as host:
        host.endpoint.listen(7)
        host.dispatcher.serve(host.endpoint, 7, lambda conn: Echo())
        host.loop.start()
        ...   # ip netns exec demo nc 10.77.0.2 7

The Endpoints get an RFC 6528 ISN generator and an MSS that fits the TUN's MTU.
"""

from __future__ import annotations

import secrets

from tcpstack.core.config import Config
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.isn import KeyedIsnGenerator
from tcpstack.core.trace import Tracer
from tcpstack.net.apps import Dispatcher
from tcpstack.net.loop import NetLoop
from tcpstack.net.netns import DEFAULT, Netns, NetnsConfig

__all__ = ["NetHost"]

IPV4_OVERHEAD = 40  # IPv4 + TCP headers without options
IPV6_OVERHEAD = 60


class NetHost:
    """Everything tcpstack needs on one namespace: owns the Netns and the loop."""

    def __init__(
        self,
        netns: Netns,
        *,
        config: Config | None = None,
        tracer: Tracer | None = None,
        track_woken: bool = True,
    ) -> None:
        self.netns = netns
        base = config if config is not None else Config()
        mtu = netns.config.mtu
        # RFC 6528 ISNs: the core computes them, the driver supplies the secret.
        isn = KeyedIsnGenerator(secrets.token_bytes(16))
        self.endpoint = Endpoint(
            netns.config.stack_ip,
            isn_generator=isn,
            config=base.with_changes(mss=min(base.mss, mtu - IPV4_OVERHEAD)),
            tracer=tracer,
            track_woken=track_woken,
        )
        self.endpoint6: Endpoint | None = None
        endpoints = [self.endpoint]
        if netns.config.stack_ip6 is not None:
            self.endpoint6 = Endpoint(
                netns.config.stack_ip6,
                isn_generator=isn,
                config=base.with_changes(mss=min(base.mss, mtu - IPV6_OVERHEAD)),
                tracer=tracer,
                track_woken=track_woken,
            )
            endpoints.append(self.endpoint6)
        self.loop = NetLoop(netns.tun, endpoints, tracer=tracer)
        self.dispatcher = Dispatcher()
        self.loop.handlers.append(self.dispatcher)

    @classmethod
    def create(
        cls,
        netns_config: NetnsConfig = DEFAULT,
        *,
        config: Config | None = None,
        tracer: Tracer | None = None,
        offload: bool = False,
    ) -> NetHost:
        """A fresh namespace (deleted again by close()); offload: see TunDevice.open."""
        return cls._around(Netns.create(netns_config, offload=offload), config, tracer)

    @classmethod
    def open(
        cls,
        netns_config: NetnsConfig = DEFAULT,
        *,
        config: Config | None = None,
        tracer: Tracer | None = None,
        offload: bool = False,
    ) -> NetHost:
        """Attach to `tcpstack netns up`'s namespace if it exists, else create one."""
        return cls._around(Netns.open(netns_config, offload=offload), config, tracer)

    @classmethod
    def _around(cls, netns: Netns, config: Config | None, tracer: Tracer | None) -> NetHost:
        """A host on `netns`; the namespace is released again if building the host fails."""
        try:
            return cls(netns, config=config, tracer=tracer)
        except BaseException:
            netns.close()
            raise

    @property
    def kernel_ip(self) -> str:
        return self.netns.config.kernel_ip

    @property
    def stack_ip(self) -> str:
        return self.netns.config.stack_ip

    def close(self) -> None:
        """Stop the loop, close the TUN, delete the namespace if we made it."""
        try:
            self.loop.close()
        finally:
            self.netns.close()

    def __enter__(self) -> NetHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
