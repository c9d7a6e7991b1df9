"""A fresh namespace + TUN + running NetLoop per real-network test (as tests/net)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tcpstack.net.host import NetHost
from tcpstack.net.netns import netns_exists
from tests.net.conftest import fresh_netns_config, require_tun


@pytest.fixture
def host() -> Iterator[NetHost]:
    """tcpstack at 10.77.0.2 / fd77::2, the kernel at 10.77.0.1 / fd77::1, loop running."""
    require_tun()
    config = fresh_netns_config()
    made = NetHost.create(config)
    try:
        made.loop.start()
        yield made
    finally:
        made.close()
        assert not netns_exists(config.name)
