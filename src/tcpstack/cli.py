"""The `tcpstack` command (also `python -m tcpstack`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tcpstack.scenarios.catalog import SCENARIOS, Scenario, ScenarioRun
from tcpstack.scenarios.claims import CLAIMS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tcpstack",
        description="A TCP implementation in pure Python that makes every state visible.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    scenario = commands.add_parser(
        "scenario",
        help="run a seed scenario in the simulator and print its ladder diagram",
        description="Run a scenario from the seed document in the deterministic simulator "
        "and print a ladder diagram: virtual time, each end's state changes by RFC name, "
        "and every segment in tcpdump-like form.",
    )
    scenario.add_argument("name", nargs="?", help="scenario name, or 'all'")
    scenario.add_argument("--list", action="store_true", help="list the scenarios")
    scenario.add_argument(
        "--out",
        metavar="DIR",
        help="also write the run's pictures into DIR (DIR/NAME for 'all'): trace.jsonl, "
        "capture.pcap, capture.pcapng, ladder.svg, states-client.svg, states-server.svg, "
        "tseq.png",
    )
    report = commands.add_parser(
        "report",
        help="write one self-contained HTML page showing every seed scenario",
        description="Run the seed scenarios and write DIR/report.html: per scenario the "
        "seed claims (English, with the Chinese original), the ladder, both ends' state "
        "diagrams, the time-sequence graph and a segment-by-segment replay.",
    )
    report.add_argument("--out", metavar="DIR", default="out/report", help="output directory")
    report.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="only this scenario (repeatable); default: all",
    )
    report.add_argument("--no-progress", action="store_true", help="no progress bar")
    commands.add_parser(
        "bench",
        help="run the benchmarks (figures as tables and JSON); see tcpstack bench --help",
        add_help=False,
    )
    packetdrill = commands.add_parser(
        "packetdrill",
        help="run packetdrill-syntax scripts against tcpstack on a virtual clock",
        description="Run packetdrill-syntax scripts: the script plays the remote peer "
        "(inbound packets injected at their times), tcpstack's segments must match the "
        "expected ones within the tolerance. Exit status 1 if any script fails.",
    )
    packetdrill.add_argument("files", nargs="+", metavar="FILE", help="script files")
    packetdrill.add_argument(
        "--tolerance_usecs",
        "--tolerance-usecs",
        type=int,
        default=4000,
        help="timing tolerance in microseconds (default 4000, as packetdrill)",
    )
    packetdrill.add_argument(
        "--config",
        choices=("linux", "plain"),
        default="linux",
        help="tcpstack's configuration: linux (Config(), the default) or plain "
        "(RFC 9293 alone: no RFC 7323/2018 options, no delayed ACK, no Nagle)",
    )
    ss = commands.add_parser(
        "ss",
        help="an `ss -tanoi`-like table of both hosts of a scenario at a virtual time",
        description="Play a scenario in the simulator and show, for both hosts, one row "
        "per listener, connection and TIME_WAIT entry: RFC state, Recv-Q/Send-Q, "
        "addresses, timers with time left, TCP info; then the stack's counters. With "
        "--at the clock stops at that virtual time, else the scenario's end is shown. "
        "For a live stack on a TUN see `tcpstack serve --ss`.",
    )
    ss.add_argument("--scenario", required=True, metavar="NAME", help="see scenario --list")
    ss.add_argument(
        "--at", type=float, default=None, metavar="SECONDS", help="virtual time to stop at"
    )
    ss.add_argument(
        "--format",
        choices=("auto", "text", "rich"),
        default="auto",
        help="plain text or rich tables (auto: rich on a terminal)",
    )
    from tcpstack.net.cli import add_commands as add_net_commands

    add_net_commands(commands)
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:
        # The benchmark runner has its own options; hand it everything after "bench".
        from tcpstack.benchmarks import run_benchmarks

        return run_benchmarks(args_list[1:])
    args = parser.parse_args(args_list)
    if args.command == "scenario":
        return _scenario_command(args.name, args.list, args.out)
    if args.command == "report":
        return _report_command(args.out, args.scenario, not args.no_progress)
    if args.command == "packetdrill":
        return _packetdrill_command(args.files, args.tolerance_usecs, args.config)
    if args.command == "ss":
        return _ss_command(args.scenario, args.at, args.format)
    if args.command in ("netns", "serve", "connect"):
        from tcpstack.net.cli import run_command as run_net_command

        return run_net_command(args)
    return 2  # pragma: no cover - argparse enforces the choices


def _packetdrill_command(files: list[str], tolerance: int, config_name: str) -> int:
    from tcpstack.core.config import PLAIN, Config
    from tcpstack.packetdrill import run_file

    config = PLAIN if config_name == "plain" else Config()
    failed = 0
    for name in files:
        try:
            result = run_file(name, config=config, tolerance_usecs=tolerance)
        except OSError as error:
            print(f"{name}: FAIL: cannot read: {error.strerror}")
            failed += 1
            continue
        print(result.describe())
        failed += not result.ok
    if len(files) > 1:
        print(f"{len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _ss_command(name: str, at: float | None, output: str) -> int:
    if name not in SCENARIOS:
        print(f"tcpstack ss: no scenario named {name!r}; see scenario --list", file=sys.stderr)
        return 2
    if at is not None and at < 0:
        print("tcpstack ss: --at must not be negative", file=sys.stderr)
        return 2
    from tcpstack.viz.ss import render_scenario_text, render_tables, scenario_snapshots

    snaps = scenario_snapshots(name, None if at is None else round(at * 1e6))
    if output == "text" or (output == "auto" and not sys.stdout.isatty()):
        print(render_scenario_text(snaps))
        return 0
    from rich.console import Console

    console = Console()
    console.print(snaps.heading())
    console.print(render_tables(list(snaps.hosts)))
    return 0


def _scenario_command(name: str | None, list_only: bool, out: str | None = None) -> int:
    if list_only:
        for item in SCENARIOS.values():
            print(f"{item.name:<26} {item.summary}")
        return 0
    if name is None:
        print("tcpstack scenario: give a NAME, 'all', or --list", file=sys.stderr)
        return 2
    if name == "all":
        chosen = list(SCENARIOS.values())
    elif name in SCENARIOS:
        chosen = [SCENARIOS[name]]
    else:
        print(f"tcpstack scenario: no scenario named {name!r}; see --list", file=sys.stderr)
        return 2
    for index, item in enumerate(chosen):
        if index:
            print()
        run = item.play()
        print(describe_run(item, run))
        if out is not None:
            target = Path(out) / item.name if name == "all" else Path(out)
            _write_pictures(item, run, target)
    return 0


def _write_pictures(item: Scenario, run: ScenarioRun, target: Path) -> None:
    from tcpstack.viz.artifacts import write_artifacts

    result = write_artifacts(run, target, name=item.name, summary=item.summary)
    # On standard error, so that the text output stays what it always was.
    for file_name in result.written:
        print(f"wrote {target / file_name}", file=sys.stderr)
    for file_name, why in result.skipped.items():
        print(f"skipped {target / file_name}: {why}", file=sys.stderr)


def _report_command(out: str, names: list[str] | None, progress: bool) -> int:
    unknown = [n for n in names or () if n not in SCENARIOS]
    if unknown:
        print(f"tcpstack report: no scenario named {unknown[0]!r}; see --list", file=sys.stderr)
        return 2
    from tcpstack.viz.report import generate_report

    path = generate_report(Path(out) / "report.html", names, progress=progress)
    print(path)
    return 0


def render_scenario(item: Scenario) -> str:
    """Run one scenario and describe it: claims, ladder, state paths, findings."""
    return describe_run(item, item.play())


def describe_run(item: Scenario, run: ScenarioRun) -> str:
    """Describe a scenario's run: claims, ladder, state paths, findings."""
    lines = [f"== {item.name}: {item.summary}"]
    for claim in item.claims:
        lines.append(f"   {claim}: {CLAIMS[claim]}")
    lines.append("")
    lines.append(run.ladder())
    lines.append("")
    lines.append("state paths:")
    for who, path in run.paths().items():
        lines.append(f"   {who:<14} {' -> '.join(path)}")
    for line in run.summary_lines:
        lines.append(f"   {line}")
    return "\n".join(lines)
