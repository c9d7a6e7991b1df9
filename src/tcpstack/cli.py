"""The `tcpstack` command (also `python -m tcpstack`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tcpstack.scenarios.catalog import SCENARIOS, Scenario
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
    commands.add_parser(
        "bench",
        help="run the benchmarks (figures as tables and JSON); see tcpstack bench --help",
        add_help=False,
    )
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:
        # The benchmark runner has its own options; hand it everything after "bench".
        from tcpstack.benchmarks import run_benchmarks

        return run_benchmarks(args_list[1:])
    args = parser.parse_args(args_list)
    if args.command == "scenario":
        return _scenario_command(args.name, args.list)
    return 2  # pragma: no cover - argparse enforces the choices


def _scenario_command(name: str | None, list_only: bool) -> int:
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
        print(render_scenario(item))
    return 0


def render_scenario(item: Scenario) -> str:
    """Run one scenario and describe it: claims, ladder, state paths, findings."""
    run = item.play()
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
