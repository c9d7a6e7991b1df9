"""One self-contained HTML page that shows every seed scenario.

Per scenario: the seed claims it demonstrates (in English, with the Chinese original
quoted), the ladder diagram, the state diagram of each end, the time-sequence graph, and
a player that replays the run segment by segment: buttons (and the arrow keys) step
through the segments, the current arrow is highlighted in the ladder, each end's states
at that step are listed, and each end's current state is marked in its state diagram.

Everything is inline (SVG, CSS, JavaScript; the PNG as a data: URI), so the file opens
from disk with no network access.
"""

from __future__ import annotations

import base64
import html
import json
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcpstack.viz import ladder_svg, states, tseq
from tcpstack.viz.artifacts import primary_conns
from tcpstack.viz.ladder import format_time
from tcpstack.viz.seed_claims import SEED_CLAIMS
from tcpstack.viz.timeline import RunLike, Timeline, timeline_of_run

TITLE = "tcpstack: seeing TCP"


@dataclass(frozen=True)
class ScenarioEntry:
    """What the report needs of one scenario: its name, claims, summary and a run."""

    name: str
    claims: tuple[str, ...]
    summary: str
    run: RunLike
    paths: dict[str, list[str]]
    findings: tuple[str, ...] = ()


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _strip_xml(svg: str) -> str:
    """An SVG document cut to its <svg> element, comments dropped, for inlining."""
    svg = states.inline_svg(svg)
    return re.sub(r"<!--.*?-->", "", svg, flags=re.S)


def _png_data_uri(timeline: Timeline, conns: tuple[str, str], title: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = tseq.plot(timeline, Path(tmp) / "tseq.png", conns=conns, title=title)
        data = path.read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def scenario_section(entry: ScenarioEntry) -> str:
    """The HTML of one scenario's section."""
    prefix = slug(entry.name)
    run = entry.run
    timeline = timeline_of_run(run)
    client_conn, server_conn = primary_conns(run, timeline)
    ladder = ladder_svg.render_svg(timeline, prefix=f"{prefix}-", title=entry.name)
    diagrams = []
    for end, conn, title in (
        ("client", client_conn, timeline.titles[0]),
        ("server", server_conn, timeline.titles[1]),
    ):
        steps = states.steps_of(timeline, conn) if conn else []
        svg = states.svg_text(steps, title=title, prefix=f"{prefix}-{end}-")
        diagrams.append((end, _strip_xml(svg)))
    png = _png_data_uri(timeline, (client_conn, server_conn), f"{entry.name}: time-sequence graph")

    replay: list[dict[str, Any]] = []
    for step in timeline.replay():
        replay.append(
            {
                "title": step.title,
                "time": format_time(step.time).strip(),
                "seg": step.segment,
                "client": [list(pair) for pair in step.states[0]],
                "server": [list(pair) for pair in step.states[1]],
                "current": {
                    "client": timeline.state_of(client_conn, step.position),
                    "server": timeline.state_of(server_conn, step.position),
                },
            }
        )

    rows = []
    for claim_id in entry.claims:
        claim = SEED_CLAIMS[claim_id]
        quotes = "".join(f"<blockquote lang='zh'>{_esc(q)}</blockquote>" for q in claim.chinese)
        correction = (
            f"<p class='correction'>tcpstack follows RFC 9293 / Linux: {_esc(claim.correction)}</p>"
            if claim.correction
            else ""
        )
        rows.append(
            f"<tr><th>{_esc(claim.id)}</th><td>{_esc(claim.english)}{correction}</td>"
            f"<td>{quotes}</td></tr>"
        )
    paths = "\n".join(f"{who:<14} {' -> '.join(path)}" for who, path in entry.paths.items())
    findings = "\n".join(entry.findings)
    data = json.dumps(replay, ensure_ascii=False).replace("</", "<\\/")
    return f"""
<section class="scenario" id="{prefix}" data-prefix="{prefix}-" tabindex="-1">
  <h2>{_esc(entry.name)}</h2>
  <p class="summary">{_esc(entry.summary)}</p>
  <table class="claims">
    <thead><tr><th>claim</th><th>what tcpstack shows</th><th>the seed (Chinese original)</th>
    </tr></thead>
    <tbody>{"".join(rows)}</tbody>
  </table>
  <div class="player" data-steps="{len(replay)}">
    <div class="controls">
      <button type="button" class="first" title="first step (Home)">&#xAB; first</button>
      <button type="button" class="prev"
        title="previous segment (left arrow)">&#x25C0; prev</button>
      <button type="button" class="next"
        title="next segment (right arrow)">next &#x25B6;</button>
      <button type="button" class="last" title="last step (End)">last &#xBB;</button>
      <span class="counter">step <b class="index">0</b> / {len(replay) - 1}</span>
      <span class="step-title"></span>
    </div>
    <div class="ends">
      <div class="end client"><h4>{_esc(timeline.titles[0])}</h4>
        <ul class="states-client"></ul></div>
      <div class="end server"><h4>{_esc(timeline.titles[1])}</h4>
        <ul class="states-server"></ul></div>
    </div>
  </div>
  <div class="ladder-box">{ladder}</div>
  <div class="diagrams">
    <figure class="diagram client">{diagrams[0][1]}
      <figcaption>client: states taken, in order</figcaption></figure>
    <figure class="diagram server">{diagrams[1][1]}
      <figcaption>server: states taken, in order</figcaption></figure>
  </div>
  <figure class="tseq"><img alt="time-sequence graph of {_esc(entry.name)}" src="{png}"/>
  <figcaption>time-sequence graph</figcaption></figure>
  <details><summary>state paths and findings</summary><pre>{_esc(paths)}
{_esc(findings)}</pre></details>
  <script type="application/json" class="replay">{data}</script>
</section>
"""


STYLE = """
:root { --accent: #e65100; --ink: #212121; --muted: #666; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Segoe UI", Helvetica, Arial, "Noto Sans CJK SC",
  "PingFang SC", "Microsoft YaHei", sans-serif; color: var(--ink); margin: 0 auto;
  max-width: 1500px; padding: 0 20px 60px; line-height: 1.4; }
header { border-bottom: 2px solid #ddd; margin-bottom: 18px; }
h1 { margin: 18px 0 6px; }
nav ol { columns: 3; font-size: 14px; }
section.scenario { border-top: 3px solid #eee; padding-top: 10px; margin-top: 36px; }
section.scenario.active { border-top-color: var(--accent); }
section.scenario:focus { outline: none; }
p.summary { font-size: 15px; color: #333; }
table.claims { border-collapse: collapse; width: 100%; font-size: 14px; margin-bottom: 12px; }
table.claims th, table.claims td { border: 1px solid #ddd; padding: 6px 8px; vertical-align: top;
  text-align: left; }
table.claims thead th { background: #fafafa; }
table.claims tbody th { width: 3.5em; }
blockquote { margin: 0 0 4px; padding: 2px 8px; border-left: 3px solid #ffcc80; background: #fff8e1;
  font-family: "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", "WenQuanYi Micro Hei",
  sans-serif; }
p.correction { margin: 6px 0 0; color: #6a1b9a; font-size: 13px; }
.player { position: sticky; top: 0; z-index: 5; background: rgba(255,255,255,0.96);
  border: 1px solid #ddd; border-radius: 6px; padding: 8px 10px; margin: 8px 0; }
.controls { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.controls button { font-size: 14px; padding: 3px 10px; cursor: pointer; border-radius: 4px;
  border: 1px solid #999; background: #f7f7f7; }
.controls button:hover { background: #ffe0b2; }
.counter { font-size: 14px; color: var(--muted); }
.step-title { font-family: "DejaVu Sans Mono", monospace; font-size: 13px; color: var(--accent); }
.ends { display: flex; gap: 30px; margin-top: 6px; }
.end h4 { margin: 0; font-size: 13px; color: var(--muted); }
.end ul { list-style: none; margin: 2px 0 0; padding: 0; font-family: "DejaVu Sans Mono", monospace;
  font-size: 14px; }
.end li b { color: var(--accent); }
.ladder-box { overflow: auto; max-height: 82vh; border: 1px solid #eee; }
.diagrams { display: flex; gap: 12px; flex-wrap: wrap; }
figure { margin: 10px 0; }
figure.diagram { flex: 1 1 600px; min-width: 0; }
figure.diagram svg { width: 100%; height: auto; }
figure.tseq img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 13px; color: var(--muted); }
g.node.current path, g.node.current polygon { stroke: #d50000; stroke-width: 5px; }
g.node.current text { font-weight: bold; }
details pre { font-size: 13px; background: #fafafa; padding: 8px; overflow: auto; }
"""

SCRIPT = """
(function () {
  "use strict";
  var players = [];
  var active = null;
  function byId(id) { return document.getElementById(id); }
  function Player(section) {
    this.section = section;
    this.prefix = section.getAttribute("data-prefix");
    this.steps = JSON.parse(section.querySelector("script.replay").textContent);
    this.index = 0;
    var self = this;
    function on(name, target) {
      section.querySelector("button." + name).addEventListener("click", function () {
        self.go(target());
      });
    }
    on("first", function () { return 0; });
    on("prev", function () { return self.index - 1; });
    on("next", function () { return self.index + 1; });
    on("last", function () { return self.steps.length - 1; });
    section.addEventListener("click", function () { setActive(self); });
    this.render(false);
  }
  Player.prototype.go = function (index) {
    setActive(this);
    this.index = Math.max(0, Math.min(this.steps.length - 1, index));
    this.render(true);
  };
  Player.prototype.fill = function (list, pairs, current) {
    while (list.firstChild) { list.removeChild(list.firstChild); }
    if (!pairs.length) {
      var none = document.createElement("li");
      none.textContent = "(no connection yet)";
      list.appendChild(none);
    }
    pairs.forEach(function (pair) {
      var item = document.createElement("li");
      if (pair[0]) { item.appendChild(document.createTextNode(pair[0] + " ")); }
      var b = document.createElement("b");
      b.textContent = pair[1];
      item.appendChild(b);
      item.setAttribute("data-state", pair[1]);
      list.appendChild(item);
    });
  };
  Player.prototype.mark = function (end, state) {
    var section = this.section;
    section.querySelectorAll("figure.diagram." + end + " g.node.current").forEach(function (n) {
      n.classList.remove("current");
    });
    if (!state) { return; }
    var ids = [this.prefix + end + "-node-" + state];
    if (state === "CLOSED") { ids.push(this.prefix + end + "-node-CLOSED-end"); }
    ids.forEach(function (id) { var n = byId(id); if (n) { n.classList.add("current"); } });
  };
  Player.prototype.render = function (scroll) {
    var step = this.steps[this.index];
    var section = this.section;
    section.querySelectorAll("g.tl-seg.tl-current").forEach(function (g) {
      g.classList.remove("tl-current");
    });
    if (step.seg !== null) {
      var seg = byId(this.prefix + "seg-" + step.seg);
      if (seg) {
        seg.classList.add("tl-current");
        if (scroll && seg.scrollIntoView) {
          seg.scrollIntoView({block: "nearest", inline: "nearest"});
        }
      }
    }
    section.querySelector(".index").textContent = String(this.index);
    section.querySelector(".step-title").textContent = step.time + "  " + step.title;
    this.fill(section.querySelector("ul.states-client"), step.client);
    this.fill(section.querySelector("ul.states-server"), step.server);
    this.mark("client", step.current.client);
    this.mark("server", step.current.server);
  };
  function setActive(player) {
    if (active === player) { return; }
    if (active) { active.section.classList.remove("active"); }
    active = player;
    player.section.classList.add("active");
  }
  document.querySelectorAll("section.scenario").forEach(function (section) {
    players.push(new Player(section));
  });
  if (players.length) { setActive(players[0]); }
  document.addEventListener("keydown", function (event) {
    if (!active || event.altKey || event.ctrlKey || event.metaKey) { return; }
    var keys = {ArrowRight: 1, ArrowLeft: -1, n: 1, p: -1};
    if (event.key in keys) {
      active.go(active.index + keys[event.key]);
      event.preventDefault();
    } else if (event.key === "Home") {
      active.go(0); event.preventDefault();
    } else if (event.key === "End") {
      active.go(active.steps.length - 1); event.preventDefault();
    }
  });
  window.tcpstackPlayers = players;
})();
"""


def render_report(
    entries: Sequence[ScenarioEntry],
    *,
    title: str = TITLE,
    on_section: Callable[[str], None] | None = None,
) -> str:
    """The whole page. `on_section(name)` is called after each scenario's section."""
    sections = []
    for entry in entries:
        sections.append(scenario_section(entry))
        if on_section is not None:
            on_section(entry.name)
    return assemble_page(entries, sections, title=title)


def assemble_page(
    entries: Sequence[ScenarioEntry], sections: Sequence[str], *, title: str = TITLE
) -> str:
    """The page around already rendered scenario sections."""
    toc = "".join(
        f'<li><a href="#{slug(e.name)}">{_esc(e.name)}</a> '
        f"<small>({', '.join(e.claims)})</small></li>"
        for e in entries
    )
    intro = (
        "Every story of the seed document (a Chinese field guide to TCP connection states) "
        "run in tcpstack's deterministic simulator: two hosts on a 10 ms link. For each, the "
        "claims it demonstrates, the ladder diagram (time runs down, not to scale; sequence "
        "numbers relative to each side's ISN; lost segments stop short with an x; timers "
        "drawn as coloured spans beside each host's line), RFC 9293 figure 5 with each "
        "end's path numbered in order, and a time-sequence graph. Use the buttons, or the "
        "left and right arrow keys, to replay a run segment by segment."
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>{_esc(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>{_esc(title)}</h1>
<p>{_esc(intro)}</p>
<nav><ol>{toc}</ol></nav>
</header>
<main>
{"".join(sections)}
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""


def seed_entry(name: str) -> ScenarioEntry:
    """Play the seed scenario `name` and wrap it for the report."""
    from tcpstack.scenarios.catalog import SCENARIOS

    item = SCENARIOS[name]
    run = item.play()
    return ScenarioEntry(
        item.name, item.claims, item.summary, run, run.paths(), tuple(run.summary_lines)
    )


def generate_report(
    path: str | Path, names: Sequence[str] | None = None, *, progress: bool = True
) -> Path:
    """Play the seed scenarios (all, or `names`) and write the report to `path`, with a
    progress bar on standard error."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tcpstack.scenarios.catalog import SCENARIOS

    chosen = list(SCENARIOS) if names is None else list(names)
    entries: list[ScenarioEntry] = []
    sections: list[str] = []
    columns = (
        TextColumn("report"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("", total=len(chosen))
        for name in chosen:
            bar.update(task, description=name)
            entry = seed_entry(name)
            entries.append(entry)
            sections.append(scenario_section(entry))
            bar.advance(task)
        bar.update(task, description="done")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(assemble_page(entries, sections), encoding="utf-8")
    return target


def write_report(
    entries: Sequence[ScenarioEntry],
    path: str | Path,
    *,
    on_section: Callable[[str], None] | None = None,
) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(entries, on_section=on_section), encoding="utf-8")
    return target


__all__ = [
    "ScenarioEntry",
    "generate_report",
    "render_report",
    "scenario_section",
    "slug",
    "write_report",
]
