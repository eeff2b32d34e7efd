"""The OpenAI-compatible backend against real servers on loopback: llm-katan (a third-party
OpenAI-compatible server, echo mode) for whole simulations, and a small misbehaving HTTP server
for rate limits, server errors, garbage, timeouts and the call budget."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from academe.agents.backends.base import ModelSpec, load_backend
from academe.agents.records import ChatMessage, Prompt, Sampling
from academe.simulation.config import ConfigError, parse_config
from academe.simulation.log import read_steps
from academe.simulation.simulate import start_run

KEY = "sk-test-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def katan():
    """llm-katan serving an echo model on loopback; its address."""
    exe = shutil.which("llm-katan") or os.path.join(os.path.dirname(sys.executable), "llm-katan")
    if not os.path.exists(exe):
        pytest.fail("llm-katan is not installed (it is a dev dependency: bash scripts/setup.sh dev)")
    port = free_port()
    server = subprocess.Popen([exe, "-m", "echo-model", "-b", "echo", "-h", "127.0.0.1", "-p", str(port),
                               "--max-concurrent", "8", "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"llm-katan exited: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/v1"
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def api_key():
    """The key in the environment before Ray starts: the model's actor reads it where it runs."""
    os.environ["ACADEME_TEST_API_KEY"] = KEY
    yield "ACADEME_TEST_API_KEY"
    os.environ.pop("ACADEME_TEST_API_KEY", None)


def api_config(out_dir, base_url, **options):
    teacher = {"kind": "openai", "path": "echo-model", "num_cpus": 0,
               "options": {"base_url": base_url, "api_key_env": "ACADEME_TEST_API_KEY", **options}}
    return parse_config({
        "run": {"name": "api", "episodes": 6, "concurrency": 6, "out_dir": str(out_dir)},
        "protocol": {"name": "socratic", "options": {"max_student_turns": 2}},
        "tasks": {"source": "generated", "steps": 2},
        "models": {"teacher_model": teacher,
                   "student_model": {"kind": "scripted", "path": "academe.protocols.oracles:guessing_student",
                                     "num_cpus": 0}},
        "agents": {"teacher": {"role": "teacher", "model": "teacher_model", "sampling": {"max_new_tokens": 32}},
                   "student": {"role": "student", "model": "student_model"}},
    })


def test_a_simulation_runs_its_teacher_on_an_openai_compatible_server(api_key, ray_local, katan, tmp_path):
    run_dir, summary = start_run(api_config(tmp_path, katan))
    assert summary["episodes"] == 6
    teacher_turns = [t for r in read_steps(run_dir) for t in r.turns if t.role == "teacher"]
    assert teacher_turns, "the teacher never spoke"
    for turn in teacher_turns:
        assert turn.reply.error is None, turn.reply.error
        assert turn.reply.text.startswith("[echo] model=echo-model"), turn.reply.text
        # The echo server repeats the last user message: the prompt academe built reached it.
        assert turn.prompt.messages[-1].content.splitlines()[0] in turn.reply.text
        assert turn.reply.completion_tokens > 0 and turn.reply.model == "echo-model"
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the API key was written to {path}"


def test_without_its_key_variable_a_run_is_refused_before_it_starts(katan, tmp_path, monkeypatch):
    monkeypatch.delenv("ACADEME_TEST_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"models\.teacher_model: options\.api_key_env: .*\$ACADEME_TEST_API_KEY"):
        start_run(api_config(tmp_path, katan))
    assert not any(tmp_path.iterdir())


def test_a_misspelt_option_is_named():
    with pytest.raises(ConfigError, match=r"models\.teacher_model: .*options\.bse_url: unknown option"):
        api_config("/tmp/x", "http://127.0.0.1:1/v1", bse_url="http://x")
    with pytest.raises(ConfigError, match=r"options\.base_url: String should match"):
        api_config("/tmp/x", "127.0.0.1:1/v1")


# ---- failure handling, against a server that misbehaves on purpose ----

class Misbehaving(BaseHTTPRequestHandler):
    """Answers each request with the next scripted behaviour: a status, "garbage", "slow" or "ok"."""

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with server.lock:
            server.requests.append((body, self.headers.get("authorization")))
            behaviour = server.script.pop(0) if server.script else server.default
            server.active += 1
            server.most_active = max(server.most_active, server.active)
        try:
            if behaviour == "slow":
                time.sleep(3)
                behaviour = "ok"
            if behaviour == "hold":
                time.sleep(0.3)
                behaviour = "ok"
            if behaviour == "garbage":
                self._send(200, b"<html>upstream hiccup</html>", "text/html")
            elif behaviour == "ok":
                text = "echo: " + body["messages"][-1]["content"]
                self._send(200, json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}).encode())
            else:
                self._send(int(behaviour), json.dumps({"error": {"message": f"status {behaviour}"}}).encode(),
                           headers={"retry-after": "0"})
        finally:
            with server.lock:
                server.active -= 1

    def _send(self, status, body, kind="application/json", headers=None):
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def misbehaving():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.lock, server.requests, server.script, server.default = threading.Lock(), [], [], "ok"
    server.active = server.most_active = 0
    server.handle_error = lambda request, address: None  # a client that timed out and left
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield server
    server.shutdown()


def backend(server, **options):
    return load_backend(ModelSpec(kind="openai", path="m", options={
        "base_url": server.url, "api_key_env": "ACADEME_TEST_API_KEY", "backoff_s": 0.01, **options}))


def prompts(n, **sampling):
    return [Prompt(messages=(ChatMessage(role="user", content=f"question {i}"),), seed=i,
                   sampling=Sampling(max_new_tokens=16, **sampling)) for i in range(n)]


def test_rate_limits_and_server_errors_are_retried_until_an_answer_comes(misbehaving, api_key):
    misbehaving.script = ["429", "503", "ok"]
    [reply] = backend(misbehaving).generate(prompts(1, temperature=0.7, top_p=0.9))
    assert reply.error is None and reply.text == "echo: question 0"
    assert (reply.prompt_tokens, reply.completion_tokens) == (7, 3)
    assert len(misbehaving.requests) == 3
    body, authorization = misbehaving.requests[-1]
    assert authorization == f"Bearer {KEY}"
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == ("m", 16, 0.7, 0.9, 0)


def test_garbage_is_retried_then_the_turn_fails_with_the_reason(misbehaving, api_key):
    misbehaving.default = "garbage"
    [reply] = backend(misbehaving, max_attempts=3).generate(prompts(1))
    assert reply.finish_reason == "error" and reply.text == ""
    assert "not a chat completion" in reply.error or "does not parse" in reply.error, reply.error
    assert "after 3 attempt(s)" in reply.error
    assert len(misbehaving.requests) == 3


def test_a_wrong_key_is_not_retried_and_never_shown(misbehaving, api_key):
    misbehaving.script = ["401"]
    [reply] = backend(misbehaving).generate(prompts(1))
    assert "answered 401" in reply.error and "after 1 attempt(s)" in reply.error
    assert KEY not in reply.error
    assert len(misbehaving.requests) == 1


def test_a_server_that_does_not_answer_in_time_fails_the_turn(misbehaving, api_key):
    misbehaving.default = "slow"
    [reply] = backend(misbehaving, timeout_s=0.5, max_attempts=2).generate(prompts(1))
    assert "no answer within 0.5 s" in reply.error and "after 2 attempt(s)" in reply.error


def test_the_call_budget_caps_requests_retries_included(misbehaving, api_key):
    misbehaving.script = ["500"]
    replies = backend(misbehaving, call_budget=3, concurrency=1).generate(prompts(3))
    assert len(misbehaving.requests) == 3
    failed = [r for r in replies if r.error is not None]
    assert len(failed) == 1 and "call budget spent" in failed[0].error  # the retry found the budget spent


def test_requests_in_flight_are_bounded_by_the_models_concurrency(misbehaving, api_key):
    misbehaving.default = "hold"
    replies = backend(misbehaving, concurrency=3).generate(prompts(10))
    assert [r.text for r in replies] == [f"echo: question {i}" for i in range(10)]
    assert misbehaving.most_active == 3
