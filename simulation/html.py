"""A run's dialogues as one static HTML page: ``academe export html``.

A run folder gets copied around, and whoever receives it should be able to read its dialogues
without installing anything: the page carries every episode as embedded JSON (the same views
``replay --json`` prints) and a little plain JavaScript renders the list, the filters and the
conversation view offline, with no server and no network. Logged text is model output, so it is
only ever inserted as text, never as markup.
"""

from __future__ import annotations

import json
from pathlib import Path

from academe.simulation.lineage import read_lineage
from academe.simulation.replay import load_views

PAGE_FILE = "dialogues.html"


def script_json(value) -> str:
    """JSON that cannot end its ``<script>`` element (``</``) nor put the parser in a comment state."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/").replace("<!--", "\\u003c!--")


def export_html(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's page (default ``RUN_DIR/dialogues.html``) and return its path."""
    run_dir = Path(run_dir)
    damaged: list[str] = []
    views = load_views(run_dir, damaged=damaged)
    lineage = read_lineage(run_dir)
    header = {"run": run_dir.resolve().name, "protocol": ", ".join(sorted({v.protocol for v in views})),
              "episodes": len(views), "damaged": damaged,
              "lineage": None if lineage is None else {"kind": lineage.kind, "source": lineage.source}}
    page = (TEMPLATE.replace("__HEADER__", script_json(header))
            .replace("__EPISODES__", script_json([v.to_json() for v in views])))
    out = run_dir / PAGE_FILE if out is None else Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>academe dialogues</title>
<style>
:root { --ink: #1f2328; --dim: #656d76; --line: #d0d7de; --bg: #f6f8fa; --solved: #1a7f37; --unsolved: #bc4c00;
        --error: #cf222e; --unfinished: #6e7781; --ungraded: #8250df; }
* { box-sizing: border-box; }
body { margin: 0; height: 100vh; display: flex; flex-direction: column; color: var(--ink); background: var(--bg);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { padding: 10px 20px; background: #24292f; color: #f0f3f6; }
header h1 { margin: 0; font-size: 18px; }
#run-info { color: #afb8c1; font-size: 13px; }
#counts span { margin-right: 16px; }
#damaged { margin: 6px 0 0; padding: 6px 10px 6px 28px; background: #fff8c5; color: #4d2d00; border-radius: 6px; }
#damaged:empty { display: none; }
main { flex: 1; min-height: 0; display: grid; grid-template-columns: minmax(360px, 42%) 1fr; }
main > section { overflow: auto; padding: 14px 20px; }
#browser { border-right: 1px solid var(--line); background: #fff; }
#filters { display: flex; flex-wrap: wrap; gap: 8px 12px; margin-bottom: 10px; }
#filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--dim); }
#filters select, #filters input { font: inherit; padding: 3px 6px; border: 1px solid var(--line); border-radius: 6px; }
#f-q { width: 180px; }
#shown { color: var(--dim); font-size: 12px; margin: 0 0 6px; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-size: 12px; color: var(--dim); border-bottom: 1px solid var(--line); padding: 4px 6px; }
td { padding: 5px 6px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #f3f6f9; }
tbody tr.selected { background: #ddf4ff; }
td.num { text-align: right; }
td.task { overflow-wrap: anywhere; }
.small, .metrics { font-size: 12px; color: var(--dim); }
a.parent { display: block; font-size: 12px; }
.status { font-weight: 600; font-size: 12px; padding: 1px 7px; border-radius: 10px; color: #fff; white-space: nowrap; }
.status.solved { background: var(--solved); } .status.unsolved { background: var(--unsolved); }
.status.error { background: var(--error); } .status.unfinished { background: var(--unfinished); }
.status.ungraded { background: var(--ungraded); }
.turn.parent-turn { opacity: 0.75; border-style: dotted; }
#attempt .text { white-space: pre-wrap; background: #f6f8fa; padding: 6px 10px; border-radius: 6px; }
.hint { color: var(--dim); }
.task-box { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.task-box h2 { margin: 0 0 2px; font-size: 16px; }
.task-box p { margin: 6px 0 0; white-space: pre-wrap; }
#turns { display: flex; flex-direction: column; gap: 10px; margin: 14px 0; }
.turn { max-width: 78%; padding: 8px 12px; border-radius: 12px; border: 1px solid var(--line); background: #fff; }
.turn.left { align-self: flex-start; border-top-left-radius: 3px; }
.turn.right { align-self: flex-end; border-top-right-radius: 3px; }
.turn.side-0 { background: #eef6ff; border-color: #b6d6fb; }
.turn.side-1 { background: #effaf1; border-color: #b4e3bd; }
.turn.side-2 { background: #fbf3ff; border-color: #dfc6f4; }
.turn.side-3 { background: #fff6e8; border-color: #f2d6a8; }
.turn.inherited { opacity: .7; border-style: dashed; }
.turn.failed { border-color: var(--error); }
.turn.dim { opacity: .35; }
.who { display: flex; gap: 8px; align-items: baseline; font-size: 12px; }
.who .label { font-weight: 700; }
.badge { font-size: 11px; padding: 0 6px; border-radius: 8px; background: #eaeef2; color: var(--dim); }
.turn .text { white-space: pre-wrap; overflow-wrap: anywhere; margin: 3px 0; }
.turn .meta { font-size: 11px; color: var(--dim); }
.turn .error, .outcome .error { color: var(--error); font-weight: 600; white-space: pre-wrap; }
mark { background: #fff8c5; }
.outcome { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.outcome ul { margin: 4px 0 0; padding-left: 20px; color: #9a6700; }
@media (max-width: 860px) { main { grid-template-columns: 1fr; } }
</style></head>
<body>
<header><h1 id="run-name"></h1><div id="run-info"></div><div id="counts"></div><ul id="damaged"></ul></header>
<main>
<section id="browser">
  <div id="filters">
    <label>status<select id="f-status"><option value="">all</option></select></label>
    <label>role<select id="f-role"><option value="">all</option></select></label>
    <label>agent<select id="f-agent"><option value="">all</option></select></label>
    <label>model version<select id="f-version"><option value="">all</option></select></label>
    <label>search turns<input id="f-q" type="search" placeholder="text said"></label>
  </div>
  <p id="shown"></p>
  <table id="episode-list"><thead><tr><th>#</th><th>task</th><th>status</th><th>turns</th><th>outcome</th></tr></thead>
  <tbody></tbody></table>
</section>
<section id="dialogue"></section>
</main>
<script type="application/json" id="header">__HEADER__</script>
<script type="application/json" id="episodes">__EPISODES__</script>
<script>
"use strict";
const H = JSON.parse(document.getElementById("header").textContent);
const EPISODES = JSON.parse(document.getElementById("episodes").textContent);
const FILTERS = ["status", "role", "agent", "version", "q"];
const STATUSES = ["solved", "unsolved", "error", "unfinished", "ungraded"];
const state = {episode: null, status: "", role: "", agent: "", version: "", q: ""};
const $ = (id) => document.getElementById(id);
const statusOf = (e) => e.status || "ungraded";  // an outcome with no verdict (an open task)
const fmt = (v) => typeof v === "number" ? String(+v.toPrecision(4)) : String(v);

function el(tag, attrs, ...children) {  // children are nodes or strings; strings become text, never markup
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false).map(
    (c) => c instanceof Node ? c : String(c)));
  return node;
}
function fill(id, values, label) {
  for (const v of values) $(id).append(el("option", {value: v}, label ? label(v) : v));
}
const turnFiltered = () => Boolean(state.role || state.agent || state.version || state.q);
function turnMatches(t) {
  return (!state.role || t.role === state.role) && (!state.agent || t.agent === state.agent)
    && (!state.version || String(t.model_version) === state.version)
    && (!state.q || (t.text || "").toLowerCase().includes(state.q.toLowerCase()));
}
function episodeMatches(e) {
  return (!state.status || statusOf(e) === state.status) && (!turnFiltered() || e.turns.some(turnMatches));
}
function forkLink(e) {
  if (!e.parent) return null;
  const folder = String(e.parent.run).replace(/[\\/]+$/, "").split(/[\\/]/).pop();
  return el("a", {class: "parent", href: `../${encodeURIComponent(folder)}/dialogues.html#episode=${e.parent.episode}`},
            `forked from episode ${e.parent.episode} at step ${e.parent.step}`);
}
function outcomeSummary(e) {
  const o = e.outcome;
  if (!o) return "";
  const parts = o.score !== null ? [`score ${fmt(o.score)}`] : [];
  for (const [k, v] of Object.entries(o.metrics || {})) parts.push(`${k} ${fmt(v)}`);
  return parts.join(" · ");
}

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  for (const f of FILTERS) { state[f] = p.get(f) || ""; $("f-" + f).value = state[f]; }
  state.episode = p.has("episode") && p.get("episode") !== "" ? Number(p.get("episode")) : null;
}
function writeHash() {
  const p = new URLSearchParams();
  if (state.episode !== null) p.set("episode", state.episode);
  for (const f of FILTERS) if (state[f]) p.set(f, state[f]);
  try { history.replaceState(null, "", "#" + p); } catch (err) { location.hash = p.toString(); }
}

function renderHeader() {
  document.title = `${H.run} · academe dialogues`;
  $("run-name").textContent = H.run;
  const lineage = H.lineage ? ` · ${H.lineage.kind} of ${H.lineage.source}` : "";
  $("run-info").textContent = `protocol ${H.protocol || "?"}${lineage}`;
  const count = (s) => EPISODES.filter((e) => statusOf(e) === s).length;
  const counts = [`${H.episodes} episodes`, `${count("solved")} solved`, `${count("unsolved")} unsolved`,
                  `${count("error")} errors`, `${count("unfinished")} unfinished`];
  if (count("ungraded")) counts.push(`${count("ungraded")} ungraded`);
  $("counts").replaceChildren(...counts.map((c) => el("span", {}, c)));
  $("damaged").replaceChildren(...H.damaged.map((d) => el("li", {}, "damaged log, left out: " + d)));
}
function renderList() {
  const body = $("episode-list").tBodies[0];
  const shown = EPISODES.filter(episodeMatches);
  body.replaceChildren(...shown.map((e) => {
    const row = el("tr", {"data-episode": e.episode, "data-status": statusOf(e), tabindex: 0},
      el("td", {}, e.episode), el("td", {class: "task"}, e.task.id, forkLink(e)),
      el("td", {}, el("span", {class: "status " + statusOf(e)}, statusOf(e))),
      el("td", {class: "num"}, e.turns.length), el("td", {class: "metrics"}, outcomeSummary(e)));
    if (e.episode === state.episode) row.classList.add("selected");
    row.addEventListener("click", (ev) => { if (!ev.target.closest("a")) select(e.episode); });
    row.addEventListener("keydown", (ev) => { if (ev.key === "Enter") select(e.episode); });
    return row;
  }));
  $("shown").textContent = `${shown.length} of ${EPISODES.length} episodes shown`;
}
function highlighted(text) {  // the search term marked, as text nodes and <mark> elements
  if (!state.q) return [text];
  const out = [], low = text.toLowerCase(), q = state.q.toLowerCase();
  let i = 0, j;
  while ((j = low.indexOf(q, i)) >= 0) {
    out.push(text.slice(i, j), el("mark", {}, text.slice(j, j + q.length)));
    i = j + q.length;
  }
  out.push(text.slice(i));
  return out;
}
function bubble(t, side) {
  const classes = ["turn", side % 2 ? "right" : "left", "side-" + (side % 4)];
  if (t.inherited) classes.push("inherited");
  if (t.error) classes.push("failed");
  if (turnFiltered() && !turnMatches(t)) classes.push("dim");
  const extra = t.finish_reason && t.finish_reason !== "stop" ? ` · ${t.finish_reason}` : "";
  return el("div", {class: classes.join(" "), "data-role": t.role, "data-agent": t.agent, "data-step": t.step,
                    "data-version": t.model_version},
    el("div", {class: "who"}, el("span", {class: "label"}, t.role + (t.move ? " · " + t.move : "")),
       t.inherited ? el("span", {class: "badge"}, "inherited from parent") : null),
    el("div", {class: "text"}, ...highlighted(t.text || "(empty)")),
    t.error ? el("div", {class: "error"}, "error: " + t.error) : null,
    el("div", {class: "meta"}, el("span", {class: "agent"}, t.agent),
       el("span", {class: "model"}, ` · ${t.model} v${t.model_version}`), ` · step ${t.step}${extra}`));
}
function alternative(p, side) {  // what the parent said at a step where this fork spoke anew
  const b = bubble(p, side);
  b.classList.add("parent-turn");
  b.querySelector(".label").textContent = "in the parent: " + b.querySelector(".label").textContent;
  return b;
}
function outcomeBox(e) {
  const o = e.outcome;
  if (!o) return el("div", {id: "outcome", class: "outcome"}, el("span", {class: "status unfinished"}, "unfinished"),
                    " resume the run to continue it");
  const lines = [el("div", {}, el("span", {class: "status " + statusOf(e)}, statusOf(e)), " ", outcomeSummary(e))];
  const rewards = Object.entries(o.rewards || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(" · ");
  if (rewards) lines.push(el("div", {class: "small"}, "rewards: " + rewards));
  if (o.error) lines.push(el("div", {class: "error"}, "error: " + o.error));
  if (e.notes.length) lines.push(el("ul", {}, ...e.notes.map((n) => el("li", {}, n))));
  return el("div", {id: "outcome", class: "outcome"}, ...lines);
}
function renderDialogue() {
  const box = $("dialogue"), e = EPISODES.find((x) => x.episode === state.episode);
  if (!e) {
    box.replaceChildren(el("p", {class: "hint"}, state.episode === null ? "Pick an episode from the list."
                                                                      : `This run has no episode ${state.episode}.`));
    return;
  }
  const where = [`task ${e.task.id}`, e.protocol, e.round !== null ? `round ${e.round}` : null].filter(Boolean);
  const head = el("div", {class: "task-box", "data-episode": e.episode},
    el("h2", {}, `Episode ${e.episode} `, el("span", {class: "status " + statusOf(e)}, statusOf(e))),
    el("div", {class: "small"}, where.join(" · ")), forkLink(e),
    el("p", {id: "question"}, el("strong", {}, "Question: "), e.task.question),
    e.task.answer !== null && e.task.answer !== undefined
      ? el("p", {id: "answer"}, el("strong", {}, "Reference answer: "), e.task.answer) : null,
    e.task.profile ? el("p", {id: "profile"}, el("strong", {}, "Student: "), e.task.profile) : null,
    e.task.attempt ? el("div", {id: "attempt"}, el("strong", {}, "The student's attempt (given with the task):"),
                        el("div", {class: "text"}, e.task.attempt)) : null);
  const roles = [...new Set(e.turns.map((t) => t.role))];
  const turns = e.turns.flatMap((t) => [bubble(t, roles.indexOf(t.role)), ...(t.inherited ? [] : e.parent_turns
    .filter((p) => p.step === t.step && p.role === t.role).map((p) => alternative(p, roles.indexOf(p.role))))]);
  box.replaceChildren(head, el("div", {id: "turns"}, ...turns), outcomeBox(e));
  const live = box.querySelector(".turn:not(.inherited)");  // a fork: show where it departs from its parent
  if (e.parent && live) live.scrollIntoView({block: "start"});
}
function render() { renderList(); renderDialogue(); }
function select(episode) { state.episode = episode; writeHash(); render(); }

const values = (key) => [...new Set(EPISODES.flatMap((e) => e.turns.map((t) => t[key])))];
fill("f-status", STATUSES.filter((s) => s !== "ungraded" || EPISODES.some((e) => statusOf(e) === s)));
fill("f-role", values("role").sort());
fill("f-agent", values("agent").sort());
fill("f-version", values("model_version").sort((a, b) => a - b).map(String), (v) => "v" + v);
for (const f of FILTERS) {
  $("f-" + f).addEventListener(f === "q" ? "input" : "change",
                               (ev) => { state[f] = ev.target.value; writeHash(); render(); });
}
window.addEventListener("hashchange", () => { readHash(); render(); });
renderHeader();
readHash();
render();
</script>
</body></html>
"""
