"""Every picture of one scenario run, written into a directory.

`write_artifacts(run, out_dir, name=...)` writes:

    trace.jsonl          every trace record, one JSON object a line
    capture.pcap         the packets, for tcpdump / tshark / Wireshark
    capture.pcapng       the same with comments naming the state changes
    ladder.svg           the ladder diagram
    states-client.svg    RFC 9293 figure 5 with the client's path highlighted
    states-server.svg    the same for the server
    tseq.png             the time-sequence graph

The state diagrams need the `dot` program and the graph matplotlib; without them those
files are skipped and named in the result's `skipped`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tcpstack.viz import ladder_svg, pcap, states, tseq
from tcpstack.viz.timeline import RunLike, Timeline, timeline_of_run

FILES = (
    "trace.jsonl",
    "capture.pcap",
    "capture.pcapng",
    "ladder.svg",
    "states-client.svg",
    "states-server.svg",
    "tseq.png",
)


@dataclass
class Artifacts:
    directory: Path
    written: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> why


def primary_conns(run: RunLike, timeline: Timeline) -> tuple[str, str]:
    """The keys of the run's client and server connections ('' when absent)."""
    return (
        timeline.key_of(run.client) if run.client is not None else "",
        timeline.key_of(run.server) if run.server is not None else "",
    )


def state_steps(timeline: Timeline, conn: str) -> list[states.Step]:
    return states.steps_of(timeline, conn) if conn else []


def write_artifacts(
    run: RunLike, out_dir: str | Path, *, name: str = "run", summary: str = ""
) -> Artifacts:
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    result = Artifacts(directory)
    story = run.story
    timeline = timeline_of_run(run)
    client_conn, server_conn = primary_conns(run, timeline)

    def put(file_name: str, path: Path) -> None:
        result.written[file_name] = path

    trace_path = directory / "trace.jsonl"
    trace_path.write_text(story.trace.to_jsonl(), encoding="utf-8")
    put("trace.jsonl", trace_path)

    title = f"{name}: {summary}" if summary else name
    packets, section = pcap.capture_story(story, title=title)
    put("capture.pcap", pcap.write_pcap(directory / "capture.pcap", packets))
    put(
        "capture.pcapng",
        pcap.write_pcapng(directory / "capture.pcapng", packets, section_comment=section),
    )
    put("ladder.svg", ladder_svg.write_svg(timeline, directory / "ladder.svg", title=title))

    if shutil.which("dot") is None:
        for end in ("client", "server"):
            result.skipped[f"states-{end}.svg"] = "the `dot` program (graphviz) is missing"
    else:
        for end, conn, title_end in (
            ("client", client_conn, timeline.titles[0]),
            ("server", server_conn, timeline.titles[1]),
        ):
            path = directory / f"states-{end}.svg"
            states.write_diagram(path, state_steps(timeline, conn), title=f"{name}: {title_end}")
            put(f"states-{end}.svg", path)

    put(
        "tseq.png",
        tseq.plot(
            timeline,
            directory / "tseq.png",
            conns=(client_conn, server_conn),
            title=f"{name}: time-sequence graph",
        ),
    )
    return result


__all__ = ["FILES", "Artifacts", "primary_conns", "state_steps", "write_artifacts"]
