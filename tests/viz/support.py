"""Shared helpers of the picture tests: cached scenario runs and the external programs."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tcpstack.scenarios.catalog import SCENARIOS, ScenarioRun
from tcpstack.viz.timeline import Timeline, timeline_of_run

SVG_NS = "{http://www.w3.org/2000/svg}"
REPO = Path(__file__).resolve().parents[2]
SEED_ZH = REPO.parent / "shared" / "seed" / "tcp-states-zh.md"

# tshark, run as root, says so on standard error; that line is not a warning about the file.
_ROOT_NOTICE = 'Running as user "root" and group "root". This could be dangerous.'


@cache
def run_of(name: str) -> ScenarioRun:
    """A scenario's run, played once per test process (runs are deterministic)."""
    return SCENARIOS[name].play()


@cache
def timeline_of(name: str) -> Timeline:
    return timeline_of_run(run_of(name))


def need(program: str, package: str) -> str:
    """The path of `program`, or skip the test naming the Debian package to install."""
    path = shutil.which(program)
    if path is None:
        pytest.skip(
            f"`{program}` is not installed (Debian package {package}; see "
            "scripts/install-system-deps.sh)"
        )
    return path


def tshark(path: Path, *args: str) -> list[list[str]]:
    """Run tshark on a capture with checksum validation on and absolute sequence numbers;
    return its tab-separated output rows. Fails on any warning or error it prints."""
    program = need("tshark", "tshark")
    result = subprocess.run(
        [
            program,
            "-n",
            "-r",
            str(path),
            "-o",
            "tcp.relative_sequence_numbers:FALSE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    stderr = [line for line in result.stderr.splitlines() if line.strip() != _ROOT_NOTICE]
    assert result.returncode == 0, result.stderr
    assert stderr == [], f"tshark printed warnings: {stderr}"
    return [line.split("\t") for line in result.stdout.splitlines()]


def sack_run() -> ScenarioRun:
    """A bulk transfer whose third data segment is lost: the receiver SACKs what came
    after it and the sender retransmits it (not a seed scenario; built here)."""
    from tcpstack.core.connection import Connection
    from tcpstack.core.segment import Datagram
    from tcpstack.scenarios.story import CLIENT_IP, MS, SECOND, Story
    from tcpstack.sim import drop_nth

    story = Story()
    accepted: list[Connection] = []
    story.listen(80, on_accept=lambda conn, now: accepted.append(conn))
    client = story.connect(80)
    story.run_until(lambda: bool(accepted) and client.state.value == "ESTABLISHED", SECOND)

    def is_data_from_client(datagram: Datagram) -> bool:
        return datagram.src == CLIENT_IP and len(datagram.segment.payload) > 0

    story.network.add_filter(drop_nth(is_data_from_client, 3))
    data = bytes(range(256)) * 80  # 20 KB: several segments in flight at once
    sent = 0
    while sent < len(data):
        sent += client.send(data[sent:], now=story.now)
        story.run_for(5 * MS)
        server = accepted[0]
        server.receive(now=story.now)
    story.run_for(3 * SECOND)
    accepted[0].receive(now=story.now)
    return ScenarioRun(story, client, accepted[0])
