"""`tcpstack netns up/down`, `tcpstack serve` and `tcpstack connect` as a person runs them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from tcpstack.net.netns import NetnsConfig, delete_netns, netns_exists, ns_socket

K4, S4 = "10.77.0.1", "10.77.0.2"


def tcpstack(*args: str) -> list[str]:
    return [sys.executable, "-m", "tcpstack", *args]


def names(config: NetnsConfig) -> list[str]:
    return ["--netns", config.name, "--tun", config.tun]


def connect_when_up(config: NetnsConfig, address: tuple[str, int]) -> socket.socket:
    end = time.monotonic() + 10
    while True:
        sock = ns_socket(config.name)
        sock.settimeout(10)
        try:
            sock.connect(address)
            return sock
        except (ConnectionRefusedError, OSError):
            sock.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def test_netns_up_serve_and_down(netns_config: NetnsConfig) -> None:
    try:
        up = subprocess.run(
            tcpstack("netns", "up", *names(netns_config)), capture_output=True, text=True
        )
        assert up.returncode == 0, up.stderr
        assert netns_exists(netns_config.name)
        serve = subprocess.Popen(
            tcpstack("serve", *names(netns_config), "--duration", "2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            echo = connect_when_up(netns_config, (S4, 7))
            echo.sendall(b"echo this")
            echo.shutdown(socket.SHUT_WR)
            assert echo.recv(100) == b"echo this"
            assert echo.recv(100) == b""
            echo.close()
            chargen = connect_when_up(netns_config, (S4, 19))
            assert chargen.recv(10) == b" !\"#$%&'()"
            chargen.close()
            out, err = serve.communicate(timeout=20)
        finally:
            if serve.poll() is None:
                serve.kill()
        assert serve.returncode == 0, err
        assert "echo     on 10.77.0.2, fd77::2 port 7" in out
        assert "LISTEN -> SYN_RECEIVED" in err and "LAST_ACK -> CLOSED" in err
        assert netns_exists(netns_config.name)  # serve attached; it does not delete
        down = subprocess.run(
            tcpstack("netns", "down", *names(netns_config)), capture_output=True, text=True
        )
        assert down.returncode == 0 and not netns_exists(netns_config.name)
    finally:
        delete_netns(netns_config.name)


def test_connect_pipes_stdin_to_a_kernel_server(netns_config: NetnsConfig) -> None:
    try:
        subprocess.run(tcpstack("netns", "up", *names(netns_config)), check=True)
        listener = ns_socket(netns_config.name)
        listener.settimeout(20)
        listener.bind((K4, 5000))
        listener.listen()
        client = subprocess.Popen(
            tcpstack("connect", *names(netns_config), K4, "5000", "--timeout", "20"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            kernel, _ = listener.accept()
            kernel.settimeout(20)
            kernel.sendall(b"greetings from the kernel\n")
            assert client.stdin is not None
            client.stdin.write(b"line from stdin\n")
            client.stdin.close()
            received = b""
            while chunk := kernel.recv(100):
                received += chunk
            assert received == b"line from stdin\n"
            kernel.close()
            assert client.stdout is not None and client.stderr is not None
            client.wait(timeout=20)
            out, err = client.stdout.read(), client.stderr.read()
        finally:
            if client.poll() is None:
                client.kill()
        assert out == b"greetings from the kernel\n"
        assert client.returncode == 0, err
        assert b"SYN_SENT -> ESTABLISHED" in err
        assert b"FIN_WAIT_2 -> TIME_WAIT" in err or b"FIN_WAIT_1 -> TIME_WAIT" in err
        listener.close()
    finally:
        delete_netns(netns_config.name)


def test_serve_without_netns_up_makes_and_removes_its_own_namespace(
    netns_config: NetnsConfig,
) -> None:
    try:
        serve = subprocess.run(
            tcpstack("serve", *names(netns_config), "--duration", "0.2", "--no-ipv6"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert serve.returncode == 0, serve.stderr
        assert "created (deleted at exit)" in serve.stdout
        assert not netns_exists(netns_config.name)
    finally:
        delete_netns(netns_config.name)
