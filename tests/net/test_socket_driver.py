"""tcpstack.socket's blocking API over the real network: NetLoop is its Driver."""

from __future__ import annotations

import socket

from tcpstack import socket as tsock
from tcpstack.net.host import NetHost
from tcpstack.socket.driver import Driver

K4, S4 = "10.77.0.1", "10.77.0.2"


def driver_of(host: NetHost) -> Driver:
    return host.loop  # structurally a Driver: now, endpoint_for, call, wait_until


def test_a_tcpstack_socket_talks_to_a_kernel_server(host: NetHost) -> None:
    listener = host.netns.socket()
    listener.settimeout(10)
    listener.bind((K4, 6000))
    listener.listen()
    client = tsock.socket(driver=driver_of(host), address=S4)
    client.settimeout(10)
    client.connect((K4, 6000))
    kernel, peer = listener.accept()
    assert peer == client.getsockname()
    client.sendall(b"hello from a tcpstack socket")
    assert kernel.recv(100) == b"hello from a tcpstack socket"
    kernel.sendall(b"and back")
    assert client.recv(100) == b"and back"
    kernel.close()
    assert client.recv(100) == b""
    client.close()
    listener.close()


def test_a_kernel_client_talks_to_a_tcpstack_server(host: NetHost) -> None:
    server = tsock.socket(driver=driver_of(host), address=S4)
    server.settimeout(10)
    server.bind(("", 6001))
    server.listen()
    kernel = host.netns.socket()
    kernel.settimeout(10)
    kernel.connect((S4, 6001))
    conn, peer = server.accept()
    assert peer == kernel.getsockname()
    kernel.sendall(b"x" * 100_000)
    kernel.shutdown(socket.SHUT_WR)
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    assert received == b"x" * 100_000
    conn.sendall(b"done")
    conn.close()
    assert kernel.recv(10) == b"done"
    kernel.close()
    server.close()
