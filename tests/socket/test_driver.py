"""The driver protocol and the simulator's driver."""

from __future__ import annotations

import errno

import pytest

from tcpstack import socket as ts
from tcpstack.core.endpoint import Endpoint
from tcpstack.scenarios.story import Story, simulation_isn
from tcpstack.sim import Network
from tests.socket.support import MS, PORT, SECOND, A, B, make_net


def test_sim_driver_is_a_driver() -> None:
    net = make_net()
    driver: ts.Driver = net.driver  # checked structurally by mypy
    assert driver.now() == 0
    assert driver.endpoint_for(A) is net.a
    assert driver.call(lambda now: now + 1) == 1


def test_wait_until_times_out_exactly_and_returns_early() -> None:
    net = make_net()
    assert not net.driver.wait_until(lambda: False, 1234)
    assert net.now == 1234
    assert net.driver.wait_until(lambda: True, 10 * SECOND)
    assert net.now == 1234
    with pytest.raises(ValueError):
        net.driver.wait_until(lambda: True, -1)


def test_nothing_can_happen_raises_instead_of_spinning() -> None:
    net = make_net()
    with pytest.raises(ts.WouldBlockForever):
        net.driver.wait_until(lambda: False, None)
    assert net.now == 0  # no virtual time was burnt either


def test_max_block_bounds_an_endless_wait() -> None:
    net = make_net()
    net.driver.max_block = 30 * SECOND
    client, _, _ = net.pair()
    # Keepalive answered by a live peer: always something to do, never an answer.
    client.setsockopt(ts.IPPROTO_TCP, ts.TCP_KEEPIDLE, 1)
    client.setsockopt(ts.SOL_SOCKET, ts.SO_KEEPALIVE, 1)
    start = net.now
    with pytest.raises(ts.WouldBlockForever):
        client.recv(1)
    assert net.now == start + 30 * SECOND
    assert client.tcp_info().state == "ESTABLISHED"


def test_endpoint_lookup_and_default_address() -> None:
    network = Network(seed=1)
    only = Endpoint(A, isn_generator=simulation_isn, track_woken=False)
    network.add_node(only)
    driver = ts.SimDriver(network)
    assert driver.endpoint_for(None) is only  # the only one is the default
    with pytest.raises(OSError) as info:
        driver.endpoint_for(B)
    assert info.value.errno == errno.EADDRNOTAVAIL
    net = make_net()
    with pytest.raises(OSError) as ambiguous:
        net.driver.endpoint_for(None)
    assert ambiguous.value.errno == errno.EADDRNOTAVAIL
    chosen = ts.SimDriver(net.network, default_address=B)
    sock = ts.socket(driver=chosen)
    sock.bind(("", 7))
    assert sock.getsockname() == (B, 7)


def test_sockets_over_story_hosts() -> None:
    """Nodes that wrap an Endpoint (the scenarios' Host) work too."""
    story = Story()
    driver = ts.SimDriver(story.network)
    listener = ts.socket(driver=driver, address=B)
    listener.bind(("", PORT))
    listener.listen()
    client = ts.socket(driver=driver, address=A)
    client.connect((B, PORT))
    server, _ = listener.accept()
    client.sendall(b"through a Host")
    assert server.recv(100) == b"through a Host"


def test_ipv6_sockets() -> None:
    network = Network(seed=2)
    v6a, v6b = "fd00::1", "fd00::2"
    for address in (v6a, v6b):
        network.add_node(Endpoint(address, isn_generator=simulation_isn, track_woken=False))
    network.link(v6a, v6b, delay=5 * MS)
    driver = ts.SimDriver(network)
    listener = ts.socket(ts.AF_INET6, driver=driver, address=v6b)
    listener.bind(("::", PORT, 0, 0))
    listener.listen()
    client = ts.socket(ts.AF_INET6, driver=driver, address=v6a)
    client.connect((v6b, PORT, 0, 0))
    server, peer = listener.accept()
    assert peer == client.getsockname() and peer[0] == v6a
    client.sendall(b"six")
    assert server.recv(10) == b"six"
    assert ts.socket(ts.AF_INET6, driver=driver).getsockname() == ("::", 0)
