"""The runner: steps many episodes concurrently and sends each model one batch of all its pending turns.

A call runs a batch of episodes of one protocol with one cast (the agents playing each role); a
program calls it once per round stage, with the same model actors throughout. One asyncio task per
model pulls every queued turn for that model (across all episodes and all the agents that share
it) and answers them in a single backend call. When a batch returns, the episodes
it completes are stepped by the protocol's pure functions, their step records are made durable in
the log, and only then are their next turns queued. A batch whose actor fails is retried whole; an
episode never sees a turn twice, because it is stepped only from replies that arrived.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol as Interface, Sequence

from academe.agents.agent import AgentSpec
from academe.agents.records import Prompt, Reply, Task
from academe.agents.redaction import redact
from academe.protocols.engine import START, Done, EpisodeState, Next, Options, Outcome, Protocol, Step
from academe.simulation.actors import ModelPool
from academe.simulation.gc_pacing import paced_gc
from academe.simulation.log import DialogueLog, read_steps
from academe.simulation.records import AskRecord, StepRecord, TurnRecord


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from the run seed and a position (episode, step, ask)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass
class Episode:
    """An episode in flight: its state, the phase whose replies it awaits, and those replies."""

    id: int
    state: EpisodeState
    phase: str
    step: int
    asks: list[AskRecord]
    replies: dict[int, tuple[Reply, float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """What one call of the runner runs: these episodes of one protocol, played by this cast."""

    protocol: Protocol
    options: Options
    cast: dict[str, tuple[AgentSpec, ...]]  # role -> its agents, in seat order
    tasks: dict[int, Task]  # episode id -> task, admitted in this order
    round: int | None = None
    seed_ids: dict[int, int] = field(default_factory=dict)  # a fork's episode -> its parent's (seeds follow it)
    stop_at: dict[int, int] = field(default_factory=dict)  # episode -> the last step it may take (a fork's limit)


@dataclass
class Progress:
    total: int
    done: int = 0
    solved: int = 0
    errors: int = 0
    messages: int = 0
    completion_tokens: int = 0
    status: str = ""  # what a hook is doing, e.g. "training smollm2 step 3/20, loss 1.2"
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class Hook(Interface):
    """Work the runner starts between steps (a training phase, say): ``due`` is asked after every
    finished episode. A hook that ``pauses`` stops new batches from the moment it is due until its
    ``run`` returns; others run while episodes go on. ``start`` runs before the first episode (a
    resumed run passes how many had finished); ``summary`` and ``training_s`` report afterwards."""

    pauses: bool
    training_s: float

    async def start(self, pool: ModelPool, finished: int) -> None: ...

    def due(self, finished: int) -> bool: ...

    async def run(self, runner: "Runner") -> None: ...

    def summary(self) -> dict: ...


@dataclass(frozen=True)
class TurnRequest:
    episode: int
    ask: int
    prompt: Prompt


class Runner:
    def __init__(
        self,
        pool: ModelPool,
        log: DialogueLog,
        run_id: str,
        seed: int = 0,
        concurrency: int = 16,
        max_batch: dict[str, int] | None = None,
        max_attempts: int = 3,
        on_progress: Callable[[Progress], None] | None = None,
    ):
        self.pool, self.log = pool, log
        self.run_id, self.seed, self.concurrency = run_id, seed, concurrency
        self.max_batch = max_batch or {}
        self.max_attempts = max_attempts
        self.on_progress = on_progress or (lambda progress: None)
        self.progress = Progress(total=0)  # of the batch running now
        self.messages = self.completion_tokens = 0  # of every batch this runner ran

    # ---- public ----
    def run(self, batch: Batch, restored: dict[int, Episode] | None = None,
            finished: dict[int, Outcome] | None = None, hooks: Sequence[Hook] = ()) -> dict[int, Outcome]:
        """Run every episode of ``batch``, continuing ``restored`` ones and skipping ``finished``
        ones; returns every episode's outcome."""
        batch.protocol.check_bindings({role: [a.name for a in agents] for role, agents in batch.cast.items()})
        with paced_gc() as self.gc:
            return asyncio.run(self._run(batch, dict(restored or {}), dict(finished or {}), list(hooks)))

    # ---- the loop ----
    async def _run(self, batch: Batch, restored: dict[int, Episode], finished: dict[int, Outcome], hooks: list):
        self.batch, self.hooks = batch, hooks
        self.agents = {a.name: a for agents in batch.cast.values() for a in agents}
        self.outcomes: dict[int, Outcome] = dict(finished)
        self.progress = Progress(total=len(batch.tasks), done=len(finished),
                                 solved=sum(o.solved is True for o in finished.values()))
        self.queues: dict[str, deque[TurnRequest]] = {m: deque() for m in self.pool.specs}
        self.wakeups = {m: asyncio.Event() for m in self.pool.specs}
        self.episodes: dict[int, Episode] = {}
        self.all_done = asyncio.Event()
        self.waiting = deque(i for i in batch.tasks if i not in finished and i not in restored)
        self.pending: list[int] = []  # stepped episodes whose records are not yet durable
        self.failure: BaseException | None = None
        self.gate = asyncio.Event()  # cleared while a hook has paused the simulation
        self.gate.set()
        self.hook_tasks: dict[int, asyncio.Task] = {}
        for episode in restored.values():
            self.episodes[episode.id] = episode
            self._enqueue(episode)
        self._admit()
        self._check_all_done()
        workers = [asyncio.create_task(self._serve(m)) for m in self.queues]
        try:
            await self.all_done.wait()
            while self.hook_tasks and self.failure is None:  # let a phase that just started finish
                await asyncio.gather(*self.hook_tasks.values())
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if self.failure is None:
                self.log.close()
        if self.failure is not None:
            raise self.failure
        return self.outcomes

    def _admit(self) -> None:
        records = []
        while self.waiting and len(self.episodes) < self.concurrency:
            episode_id = self.waiting.popleft()
            task = self.batch.tasks[episode_id]
            records.append(self._advance(episode_id, START, -1, (), begin_step(self.batch, task)))
        self.log.append(records)
        self._dispatch_pending()
        self.gc.tick()

    async def _serve(self, model: str) -> None:
        try:
            await self._serve_forever(model)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # e.g. the disk is full: stop the run, keep what is logged
            self.failure = exc
            self.all_done.set()

    async def _serve_forever(self, model: str) -> None:
        """Send the model's queued turns as batches, keeping up to its kind's ``in_flight`` batches
        out at once (1 for a model that answers one batch at a time; more for an engine that
        batches continuously, so turns go out as they become ready)."""
        queue, wakeup = self.queues[model], self.wakeups[model]
        limit = self.max_batch.get(model, 64)
        slots = asyncio.Semaphore(self.pool.specs[model].backend.in_flight)
        in_flight: set[asyncio.Task] = set()
        try:
            while True:
                await slots.acquire()
                while not queue or not self.gate.is_set():
                    if not queue:
                        wakeup.clear()
                        await wakeup.wait()
                    else:
                        await self.gate.wait()
                batch = [queue.popleft() for _ in range(min(limit, len(queue)))]
                task = asyncio.create_task(self._answer(model, batch, slots))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            for task in in_flight:
                task.cancel()

    async def _answer(self, model: str, batch: list[TurnRequest], slots: asyncio.Semaphore) -> None:
        try:
            started = time.time()
            replies = await self._generate(model, [r.prompt for r in batch])
            self._deliver(batch, replies, started, time.time())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # e.g. the disk is full: stop the run, keep what is logged
            self.failure = exc
            self.all_done.set()
        finally:
            slots.release()

    async def _generate(self, model: str, prompts: list[Prompt]) -> list[Reply]:
        """One backend call for the batch; a failed actor gets the whole batch again."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await self.pool.generate(model, prompts)
            except Exception as exc:  # actor died, or the backend raised: retry the whole batch
                error = redact(f"{type(exc).__name__}: {exc}").splitlines()[0][:500]
                if attempt < self.max_attempts:
                    await asyncio.sleep(0.5 * attempt)
        return [Reply(text="", prompt_tokens=0, completion_tokens=0, finish_reason="error",
                      model=model, model_version=0, latency_s=0.0,
                      error=f"model {model!r} failed {self.max_attempts} times: {error}")
                for _ in prompts]

    def _deliver(self, batch: list[TurnRequest], replies: list[Reply], started: float, ended: float):
        complete: list[Episode] = []
        for request, reply in zip(batch, replies):
            episode = self.episodes[request.episode]
            episode.replies[request.ask] = (reply, started, ended)
            self.progress.messages += 1
            self.progress.completion_tokens += reply.completion_tokens
            self.messages += 1
            self.completion_tokens += reply.completion_tokens
            if len(episode.replies) == len(episode.asks):
                complete.append(episode)
        records = [self._step(episode) for episode in complete]
        self.log.append(records)  # durable before any of these steps counts as done
        self._admit()
        self._start_due_hooks()
        self.on_progress(self.progress)
        self._check_all_done()

    # ---- hooks ----
    def pause(self) -> None:
        """Stop sending new batches (those in flight still finish)."""
        self.gate.clear()

    def resume(self) -> None:
        self.gate.set()

    def report(self, status: str) -> None:
        self.progress.status = status
        self.on_progress(self.progress)

    def _start_due_hooks(self) -> None:
        for i, hook in enumerate(self.hooks):
            if i not in self.hook_tasks and hook.due(self.progress.done):
                if hook.pauses:
                    self.pause()  # now, before any worker takes another batch
                self.hook_tasks[i] = asyncio.create_task(self._run_hook(i, hook))

    async def _run_hook(self, i: int, hook: Hook) -> None:
        try:
            await hook.run(self)
        except Exception as exc:  # a hook that breaks stops the run; what is logged stays
            self.failure = exc
            self.all_done.set()
        finally:
            del self.hook_tasks[i]
            if not any(self.hooks[j].pauses for j in self.hook_tasks):
                self.resume()
            self.report("")
            self._start_due_hooks()  # episodes may have finished meanwhile

    def _step(self, episode: Episode) -> StepRecord:
        turns = tuple(TurnRecord(role=a.role, seat=a.seat, agent=a.agent, asked=a.asked, prompt=a.prompt, index=i,
                                 reply=episode.replies[i][0], started=episode.replies[i][1],
                                 ended=episode.replies[i][2])
                      for i, a in enumerate(episode.asks))
        nxt = next_step(self.batch.protocol, episode.phase, episode.state, turns)
        return self._advance(episode.id, episode.phase, episode.step, turns, nxt)

    def _advance(self, episode_id: int, phase: str, step: int, turns: tuple, nxt: Step) -> StepRecord:
        """Apply a step: build its log record, and either queue the next asks or finish."""
        record = step_record(self.batch, self.run_id, self.seed, self.agents, episode_id, phase, step + 1, turns, nxt)
        if record.asks:
            self.episodes[episode_id] = Episode(episode_id, nxt.state, record.next_phase, record.step,
                                                list(record.asks))
            self.pending.append(episode_id)
        else:
            self._finish(episode_id, record.outcome)
        return record

    def _dispatch_pending(self) -> None:
        """Queue the asks of episodes whose step is now durable."""
        for episode_id in self.pending:
            if episode_id in self.episodes:
                self._enqueue(self.episodes[episode_id])
        self.pending.clear()

    def _enqueue(self, episode: Episode) -> None:
        for i, ask in enumerate(episode.asks):
            model = self.agents[ask.agent].model
            self.queues[model].append(TurnRequest(episode.id, i, ask.prompt))
            self.wakeups[model].set()

    def _finish(self, episode_id: int, outcome: Outcome) -> None:
        self.episodes.pop(episode_id, None)
        self.outcomes[episode_id] = outcome
        self.progress.done += 1
        self.progress.solved += outcome.solved is True
        self.progress.errors += outcome.error is not None

    def _check_all_done(self) -> None:
        if self.progress.done >= self.progress.total:
            self.all_done.set()


# ---- the pure part of a step, shared with verification (``simulation/verify.py``) ----

def begin_step(batch: Batch, task: Task) -> Step:
    """An episode's first step; a start that raises ends the episode with the error."""
    try:
        return batch.protocol.begin(task, batch.options)
    except Exception as exc:
        return failed(EpisodeState(task=task), exc)


def next_step(protocol: Protocol, phase: str, state: EpisodeState, turns: Sequence[TurnRecord]) -> Step:
    """What the protocol makes of the turns' replies; a failed turn or a raising step ends the episode."""
    try:
        broken = next((t.reply for t in turns if t.reply.finish_reason == "error"), None)
        if broken is not None:
            raise RuntimeError(broken.error or "the agent failed")
        return protocol.step(phase, state, [t.answer() for t in turns])
    except Exception as exc:
        return failed(state, exc)


def step_record(batch: Batch, run_id: str, seed: int, agents: dict[str, AgentSpec], episode_id: int, phase: str,
                step: int, turns: tuple, nxt: Step) -> StepRecord:
    """The log record of step ``step``: its turns, the new state, and the asks addressed to agents
    with the exact prompts they will send (or the outcome)."""
    asks: tuple[AskRecord, ...] = ()
    if isinstance(nxt, Next) and step >= batch.stop_at.get(episode_id, step + 1):
        nxt = Done(state=nxt.state, outcome=Outcome(metrics={"stopped_at_step": step}), notes=nxt.notes)
    if isinstance(nxt, Next):
        try:
            asks = addressed_asks(batch, seed, agents, episode_id, step, nxt)
        except Exception as exc:  # e.g. an ask to a seat the cast does not have
            nxt = failed(nxt.state, exc)
    return StepRecord(run=run_id, episode=episode_id, step=step, round=batch.round, protocol=batch.protocol.name,
                      phase=phase, turns=turns, state=nxt.state, notes=nxt.notes, time=time.time(),
                      next_phase=nxt.phase if asks else None, asks=asks, outcome=None if asks else nxt.outcome)


def addressed_asks(batch: Batch, seed: int, agents: dict[str, AgentSpec], episode_id: int, step: int,
                   nxt: Next) -> tuple[AskRecord, ...]:
    """The step's asks addressed to agents, each with the exact prompt it will send."""
    cast = {role: [a.name for a in agents_] for role, agents_ in batch.cast.items()}
    task = nxt.state.task.base()
    asks = []
    for i, (ask, seat) in enumerate(batch.protocol.seats(nxt, cast)):
        seed_id = batch.seed_ids.get(episode_id, episode_id)
        prompt = agents[seat.agent].prompt(ask.messages, seed=derive_seed(seed, seed_id, step, i), task=task)
        asks.append(AskRecord(role=seat.role, seat=seat.seat, agent=seat.agent, asked=ask.messages, prompt=prompt))
    if not asks:
        raise RuntimeError(f"phase {nxt.phase!r} asked nobody: no agent plays its role")
    return tuple(asks)


def failed(state: EpisodeState, exc: Exception) -> Done:
    """The episode ends with the error (not judged: failed), naming where it was raised."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    return Done(state=state, outcome=Outcome(error=redact(f"{type(exc).__name__}: {exc}{at}")))


def restore(protocol: Protocol, run_dir: Path, episodes: range | None = None) -> tuple[dict[int, Episode], dict[int, Outcome]]:
    """From the log: finished episodes' outcomes, and unfinished ones as of their last logged step."""
    last: dict[int, StepRecord] = {}
    for record in read_steps(run_dir, episodes=episodes):
        if record.episode not in last or record.step > last[record.episode].step:
            last[record.episode] = record
    restored, finished = {}, {}
    for episode_id, record in last.items():
        if record.outcome is not None:
            finished[episode_id] = record.outcome
        else:
            restored[episode_id] = Episode(id=episode_id, state=record.episode_state(protocol),
                                           phase=record.next_phase, step=record.step, asks=list(record.asks))
    return restored, finished
