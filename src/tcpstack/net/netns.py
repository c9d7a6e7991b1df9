"""A network namespace holding the TUN device: where tcpstack meets the kernel's TCP.

Layout (the defaults; every name and address is configurable):

    root namespace                       namespace "tcpstack-ns"
    --------------                       ------------------------------------------
    this process                         interface tcpstack0 (the TUN device)
      fd of /dev/net/tun  <== packets ==>  kernel address 10.77.0.1/24, fd77::1/64
      tcpstack answers for 10.77.0.2 and fd77::2 (the kernel routes the subnet to
      the TUN, so whatever the namespace's programs send to .2 reaches tcpstack)

How it is built (`Netns.create`): `ip netns add`, open the TUN in the root namespace,
`ip link set TUN netns NS`, then addresses and link state inside it. The descriptor stays
usable in the root namespace while the interface lives in the namespace, and the root
namespace never gets an address or a route: traffic only ever goes to addresses inside
the namespace. `Netns.attach` reopens a persistent TUN that `tcpstack netns up` left in
an existing namespace (opening /dev/net/tun from inside that namespace, via setns(2) on
the calling thread only).

Programs on the kernel's side run inside the namespace: `ip netns exec NS prog`, or, in
this process, sockets created while one thread is `entered()` into the namespace (a
socket stays in the namespace it was created in).
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from tcpstack.net.tun import TunDevice

__all__ = [
    "DEFAULT",
    "Netns",
    "NetnsConfig",
    "NetnsError",
    "delete_netns",
    "entered",
    "netns_exists",
    "ns_socket",
]

CLONE_NEWNET = 0x40000000
NETNS_DIRS = ("/run/netns", "/var/run/netns")


class NetnsError(RuntimeError):
    """An `ip` command failed; the message carries its stderr."""


@dataclass(frozen=True, slots=True)
class NetnsConfig:
    """Names and addresses of one namespace + TUN setup."""

    name: str = "tcpstack-ns"
    tun: str = "tcpstack0"
    kernel_ip: str = "10.77.0.1"
    stack_ip: str = "10.77.0.2"
    prefix: int = 24
    kernel_ip6: str | None = "fd77::1"
    stack_ip6: str | None = "fd77::2"
    prefix6: int = 64
    mtu: int = 1500

    def with_changes(self, **changes: object) -> NetnsConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def stack_addresses(self) -> list[str]:
        return [self.stack_ip] + ([self.stack_ip6] if self.stack_ip6 else [])

    def validate(self) -> None:
        """Both ends on one private subnet (so nothing can be routed anywhere else)."""
        net4 = ipaddress.ip_network(f"{self.kernel_ip}/{self.prefix}", strict=False)
        pairs: list[tuple[str, str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = [
            (self.kernel_ip, self.stack_ip, net4)
        ]
        if (self.kernel_ip6 is None) != (self.stack_ip6 is None):
            raise ValueError("give both IPv6 addresses or neither")
        if self.kernel_ip6 is not None and self.stack_ip6 is not None:
            net6 = ipaddress.ip_network(f"{self.kernel_ip6}/{self.prefix6}", strict=False)
            pairs.append((self.kernel_ip6, self.stack_ip6, net6))
        for kernel, stack, net in pairs:
            k, s = ipaddress.ip_address(kernel), ipaddress.ip_address(stack)
            if k == s:
                raise ValueError(f"kernel and tcpstack need different addresses ({k})")
            if s not in net:
                raise ValueError(f"{s} is not on the kernel's subnet {net}")
            if not (k.is_private and s.is_private):
                raise ValueError(f"use private addresses, not {k} / {s}")
        if not 68 <= self.mtu <= 65535:
            raise ValueError(f"MTU {self.mtu} out of range")


DEFAULT = NetnsConfig()


# --------------------------------------------------------------------------- commands


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; raise NetnsError with its stderr when it fails (and check)."""
    try:
        result = subprocess.run(
            ["ip", *args], capture_output=True, text=True, check=False, timeout=30
        )
    except FileNotFoundError as error:
        raise NetnsError("the `ip` command (iproute2) is not installed") from error
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def netns_path(name: str) -> str:
    for directory in NETNS_DIRS:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return os.path.join(NETNS_DIRS[0], name)


def netns_exists(name: str) -> bool:
    return any(os.path.exists(os.path.join(d, name)) for d in NETNS_DIRS)


def delete_netns(name: str) -> bool:
    """Delete namespace `name` (and every interface in it). False if it did not exist."""
    if not netns_exists(name):
        return False
    ip("netns", "del", name)
    return True


def exec_argv(name: str, argv: Sequence[str]) -> list[str]:
    """The command line that runs argv inside namespace `name`."""
    return ["ip", "netns", "exec", name, *argv]


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with the calling thread (only) inside network namespace `name`.

    Sockets and TUN descriptors opened in the body belong to that namespace for their
    whole life; other threads of the process are not affected.
    """
    target = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)
    finally:
        os.close(target)


def ns_socket(
    name: str,
    family: int = socket.AF_INET,
    kind: int = socket.SOCK_STREAM,
    proto: int = 0,
) -> socket.socket:
    """A stdlib socket living in namespace `name`: the kernel's side of a test."""
    with entered(name):
        return socket.socket(family, kind, proto)


def _write_sysctl(path: str, value: str) -> bool:
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- setup


class Netns:
    """A namespace with a TUN device in it, the descriptor held by this process."""

    def __init__(self, config: NetnsConfig, tun: TunDevice, *, owns_namespace: bool) -> None:
        self.config = config
        self.tun = tun
        self.owns_namespace = owns_namespace

    @property
    def name(self) -> str:
        return self.config.name

    @classmethod
    def create(
        cls, config: NetnsConfig = DEFAULT, *, persist: bool = False, offload: bool = False
    ) -> Netns:
        """Create the namespace and the TUN in it, with both sides' addresses.

        `persist` keeps the TUN (and so the setup) when this process exits; `tcpstack
        netns up` uses it, and a later `Netns.attach` reopens it. `offload`: see
        TunDevice.open.
        """
        config.validate()
        if netns_exists(config.name):
            raise NetnsError(f"network namespace {config.name} already exists")
        ip("netns", "add", config.name)
        tun: TunDevice | None = None
        try:
            tun = TunDevice.open(config.tun, persist=persist, offload=offload)
            ip("link", "set", "dev", tun.name, "netns", config.name)
            cls._configure(config)
        except BaseException:
            if tun is not None:
                tun.close()
            delete_netns(config.name)
            raise
        return cls(config, tun, owns_namespace=True)

    @staticmethod
    def _configure(config: NetnsConfig) -> None:
        name, dev = config.name, config.tun
        ip("-n", name, "link", "set", "dev", "lo", "up")
        ip("-n", name, "link", "set", "dev", dev, "mtu", str(config.mtu))
        if config.kernel_ip6 is not None:
            # No router solicitations or DAD probes on the TUN: fewer stray packets for
            # tcpstack to count, and the address is usable at once.
            with entered(name):
                base = f"/proc/sys/net/ipv6/conf/{dev}"
                _write_sysctl(f"{base}/router_solicitations", "0")
                _write_sysctl(f"{base}/accept_dad", "0")
                _write_sysctl(f"{base}/accept_ra", "0")
        ip("-n", name, "addr", "add", f"{config.kernel_ip}/{config.prefix}", "dev", dev)
        if config.kernel_ip6 is not None:
            address6 = f"{config.kernel_ip6}/{config.prefix6}"
            ip("-n", name, "addr", "add", address6, "dev", dev, "nodad")
        ip("-n", name, "link", "set", "dev", dev, "up")

    @classmethod
    def attach(cls, config: NetnsConfig = DEFAULT, *, offload: bool = False) -> Netns:
        """Reopen the persistent TUN that `tcpstack netns up` left in the namespace."""
        if not netns_exists(config.name):
            raise NetnsError(f"no network namespace {config.name} (try: tcpstack netns up)")
        shown = ip("-n", config.name, "link", "show", "dev", config.tun, check=False)
        if shown.returncode != 0:
            raise NetnsError(f"namespace {config.name} has no interface {config.tun}")
        with entered(config.name):
            tun = TunDevice.open(config.tun, offload=offload)
        return cls(config, tun, owns_namespace=False)

    @classmethod
    def open(cls, config: NetnsConfig = DEFAULT, *, offload: bool = False) -> Netns:
        """Attach when `tcpstack netns up` made the setup, else create a private one."""
        if netns_exists(config.name):
            return cls.attach(config, offload=offload)
        return cls.create(config, offload=offload)

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return exec_argv(self.name, argv)

    def run(
        self, argv: Sequence[str], *, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a program inside the namespace and wait for it."""
        return subprocess.run(
            self.exec_argv(argv), capture_output=True, text=True, timeout=timeout, check=check
        )

    def socket(
        self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
    ) -> socket.socket:
        return ns_socket(self.name, family, kind, proto)

    def close(self) -> None:
        """Close the descriptor; delete the namespace if this object created it."""
        self.tun.close()
        if self.owns_namespace:
            delete_netns(self.name)

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Netns {self.name} tun={self.tun.name} owns={self.owns_namespace}>"
