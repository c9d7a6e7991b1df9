"""Fixtures for the real-network tests: a fresh namespace + TUN + running loop per test.

Every test gets its own namespace (named after the process and a counter, so parallel
workers never collide) and it is deleted in a finally, pass or fail. Traffic only goes
between tcpstack and the kernel inside that namespace.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tcpstack.net.host import NetHost
from tcpstack.net.netns import NetnsConfig, netns_exists
from tcpstack.net.tun import tun_available

_serial = itertools.count()


def fresh_netns_config() -> NetnsConfig:
    n = next(_serial)
    pid = os.getpid()
    config = NetnsConfig(name=f"tsk-test-{pid}-{n}", tun=f"tsk{pid}n{n}")
    assert len(config.tun) < 16
    return config


def require_tun() -> None:
    reason = tun_available()
    if reason is not None:
        pytest.skip(f"real-network test: {reason}")


@pytest.fixture
def netns_config() -> NetnsConfig:
    require_tun()
    return fresh_netns_config()


@pytest.fixture
def host(netns_config: NetnsConfig) -> Iterator[NetHost]:
    """tcpstack at 10.77.0.2 / fd77::2, the kernel at 10.77.0.1 / fd77::1, loop running."""
    made = NetHost.create(netns_config)
    try:
        made.loop.start()
        yield made
    finally:
        made.close()
        assert not netns_exists(netns_config.name)


@pytest.fixture
def offload_host(netns_config: NetnsConfig) -> Iterator[NetHost]:
    """Like `host`, with the TUN in offload mode (IFF_VNET_HDR, TSO both ways)."""
    made = NetHost.create(netns_config, offload=True)
    try:
        made.loop.start()
        yield made
    finally:
        made.close()
        assert not netns_exists(netns_config.name)
