"""The static dialogue page (``academe export html``), rendered by a real headless Chromium."""

import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from academe.simulation.fork import fork_points, make_fork
from academe.simulation.html import export_html
from academe.simulation.replay import episodes_of, load_views
from academe.simulation.simulate import resume_run, start_run
from simulations import SCRIPTED_STUDENT, config

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
MARKUP = "<script>alert(1)</script><b>x</b>"


def local_run(out_dir, **kw):
    """A run of scripted agents in this process (no Ray), in well under a second."""
    c = config(out_dir, **kw)
    run_dir, _ = start_run(c.replace(ray=c.ray.replace(enabled=False)))
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    parent = local_run(out, episodes=6)
    markup = local_run(tmp_path_factory.mktemp("markup"), episodes=2,
                       student=SCRIPTED_STUDENT | {"path": "agents_for_tests:markup_student"})
    fork = make_fork(parent, fork_points(episodes_of(parent), [], "unsolved", 1), {})
    resume_run(fork)
    for run_dir in (parent, markup, fork):
        export_html(run_dir)
    return SimpleNamespace(parent=parent, markup=markup, fork=fork)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Runs headless Chromium on a page; returns its stdout (the DOM after the page's scripts ran)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no `chromium` on PATH (Debian package chromium): the page cannot be rendered here")

    def run(*args: str) -> str:
        profile = tmp_path_factory.mktemp("chromium-profile")
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    return run


class Node:
    def __init__(self, tag, attrs):
        self.tag, self.attrs, self.children = tag, dict(attrs), []

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    @property
    def classes(self) -> set:
        return set((self.attrs.get("class") or "").split())

    def all(self, tag=None, cls=None, **attrs):
        """Descendants with this tag, class and attributes (``data_role`` names ``data-role``)."""
        for child in self.children:
            if isinstance(child, str):
                continue
            if ((tag is None or child.tag == tag) and (cls is None or cls in child.classes)
                    and all(child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())):
                yield child
            yield from child.all(tag, cls, **attrs)

    def one(self, tag=None, cls=None, **attrs):
        (found,) = self.all(tag, cls, **attrs)
        return found


class DomBuilder(HTMLParser):
    VOID = frozenset({"meta", "input", "br", "img", "hr", "link", "source", "wbr", "col", "area", "base", "embed"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = [Node("#document", {})]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs)
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        while len(self.stack) > 1 and self.stack.pop().tag != tag:
            pass

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def rendered(browser, page: Path, fragment: str) -> Node:
    builder = DomBuilder()
    builder.feed(browser("--dump-dom", f"{page.as_uri()}#{fragment}"))
    return builder.stack[0]


def test_the_page_is_one_self_contained_file_with_every_episode(runs, tmp_path):
    page = runs.parent / "dialogues.html"
    text = page.read_text()
    assert not re.search(r"https?://", text) and "<link" not in text and not re.search(r"\ssrc\s*=", text)
    assert "@import" not in text and "url(" not in text
    blob = re.search(r'<script type="application/json" id="episodes">(.*?)</script>', text, re.DOTALL).group(1)
    assert json.loads(blob) == [v.to_json() for v in load_views(runs.parent)]
    elsewhere = export_html(runs.parent, tmp_path / "pages" / "run.html")
    assert elsewhere == tmp_path / "pages" / "run.html" and [p.name for p in elsewhere.parent.iterdir()] == ["run.html"]
    assert elsewhere.read_text() == text


def test_an_episode_is_shown_as_the_logged_conversation(runs, browser):
    views = load_views(runs.parent)
    dom = rendered(browser, runs.parent / "dialogues.html", "episode=1")
    rows = list(dom.one(id="episode-list").one("tbody").all("tr"))
    assert [int(r.attrs["data-episode"]) for r in rows] == [v.episode for v in views]
    assert [r.attrs["data-status"] for r in rows] == [v.status for v in views]
    assert "selected" in dom.one("tr", data_episode="1").classes
    counts = dom.one(id="counts").text
    for status in ("solved", "unsolved"):
        assert f"{sum(v.status == status for v in views)} {status}" in counts
    assert f"{len(views)} episodes" in counts and dom.one(id="run-name").text == runs.parent.name

    view = views[1]
    dialogue = dom.one(id="dialogue")
    assert view.task["question"] in dialogue.one(id="question").text
    assert dialogue.one(id="answer").text.endswith(view.task["answer"])
    bubbles = list(dialogue.all(cls="turn"))
    assert len(bubbles) == len(view.turns) > 1 and any(t.move for t in view.turns)
    for bubble, turn in zip(bubbles, view.turns):
        assert bubble.attrs["data-role"] == turn.role
        assert bubble.one(cls="label").text == turn.role + (f" · {turn.move}" if turn.move else "")
        assert bubble.one(cls="text").text == turn.text
        assert bubble.one(cls="agent").text == turn.agent
        meta = bubble.one(cls="meta").text
        assert f"{turn.model} v{turn.model_version}" in meta and f"step {turn.step}" in meta
        assert "inherited" not in bubble.classes
    assert view.status in dialogue.one(id="outcome").text


def test_filters_are_preset_from_the_url(runs, browser):
    views = load_views(runs.parent)
    page = runs.parent / "dialogues.html"
    unsolved = [v.episode for v in views if v.status == "unsolved"]
    assert unsolved and len(unsolved) < len(views)
    dom = rendered(browser, page, "status=unsolved")
    assert [int(r.attrs["data-episode"]) for r in dom.one(id="episode-list").one("tbody").all("tr")] == unsolved
    assert "Pick an episode" in dom.one(id="dialogue").text

    said = [v.episode for v in views if any(t.role == "teacher" and "calculation" in t.text for t in v.turns)]
    assert said and len(said) < len(views)
    dom = rendered(browser, page, f"role=teacher&version=0&q=CALCULATION&episode={said[0]}")
    assert [int(r.attrs["data-episode"]) for r in dom.one(id="episode-list").one("tbody").all("tr")] == said
    assert {m.text.lower() for m in dom.one(id="dialogue").all("mark")} == {"calculation"}
    for bubble in dom.one(id="dialogue").all(cls="turn"):
        matches = bubble.attrs["data-role"] == "teacher" and "calculation" in bubble.one(cls="text").text
        assert ("dim" in bubble.classes) != matches


def test_model_output_is_shown_as_text_never_as_markup(runs, browser):
    views = load_views(runs.markup)
    dom = rendered(browser, runs.markup / "dialogues.html", "episode=0")
    students = [b for b in dom.one(id="dialogue").all(cls="turn") if b.attrs["data-role"] == "student"]
    assert students and all(b.one(cls="text").text.startswith(MARKUP) for b in students)
    assert not list(dom.all("b"))
    assert len(list(dom.all("script"))) == 3  # the page's own: header, episodes, code
    assert len(list(dom.one(id="episode-list").one("tbody").all("tr"))) == len(views) == 2


def test_a_fork_links_each_episode_to_its_parent_page(runs, browser):
    views = load_views(runs.fork)
    dom = rendered(browser, runs.fork / "dialogues.html", "episode=0")
    for view, row in zip(views, dom.one(id="episode-list").one("tbody").all("tr"), strict=True):
        link = row.one("a", cls="parent")
        assert link.text == f"forked from episode {view.parent['episode']} at step {view.parent['step']}"
        href = link.attrs["href"]
        assert href == f"../{runs.parent.name}/dialogues.html#episode={view.parent['episode']}"
        assert (runs.fork / href.split("#")[0]).resolve() == (runs.parent / "dialogues.html").resolve()
    shown = list(dom.one(id="dialogue").all(cls="turn"))
    bubbles = [b for b in shown if "parent-turn" not in b.classes]
    beside = [b for b in shown if "parent-turn" in b.classes]  # what the parent said where the fork spoke
    assert [("inherited" in b.classes) for b in bubbles] == [t.inherited for t in views[0].turns]
    assert views[0].parent_turns and [b.one(cls="text").text for b in beside] == [t.text for t in
                                                                                  views[0].parent_turns]
    assert any(t.inherited for t in views[0].turns) and "inherited from parent" in bubbles[0].text


def test_a_screenshot_of_a_dialogue_is_kept_as_an_artefact(runs, browser):
    longest = max(load_views(runs.parent), key=lambda v: len(v.turns))
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "html-viewer.png"
    shot.unlink(missing_ok=True)
    browser(f"--screenshot={shot}", "--window-size=1280,900",
            f"{(runs.parent / 'dialogues.html').as_uri()}#episode={longest.episode}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert struct.unpack(">II", data[16:24]) == (1280, 900)
