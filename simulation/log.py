"""The durable dialogue log: one record per episode step, on disk before the step counts as done.

Layout of ``RUN_DIR/log``:
- ``live-NNNNN.jsonl``: the segment being written; each line is one episode step (the turns it
  consumed, the new state, the prompts it asked next or the outcome), flushed and fsynced per batch,
  written as the changes since the episode's previous line (``log_encoding``); every reader gets
  whole records. A line is the unit of atomicity: a torn last line (a killed driver) is dropped on
  reopen.
- ``steps-NNNNN.parquet`` and ``messages-NNNNN.parquet``: a finished segment, compacted. The
  steps table is what resume reads; the messages table (one row per turn) is what users read.
- A sharded run (``run.shards``) has one writer per shard, each on its own episodes: shard k > 0
  names its segments ``live-sKKK-NNNNN.jsonl`` and so on. Readers read every segment; an episode's
  lines are all in one writer's segments, in order, so the log reads as one.

``format.json`` names the version of the records (``simulation/records.py``); a log of a version
this academe cannot read is refused with a message instead of being misread.

``read_messages(run_dir)`` returns every turn as a pyarrow Table (``.to_pandas()``, HF
``datasets.Dataset(table)`` and ``ray.data.from_arrow`` all take it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import TypeAdapter
from pydantic_core import to_json

from academe.agents.records import ChatMessage
from academe.simulation.log_encoding import Memory, decode, encode
from academe.simulation.records import LOG_FORMAT, READABLE_FORMATS, StepRecord

STEP_KEYS = ("run", "episode", "step", "round", "protocol", "phase", "next_phase", "time")  # + the record as JSON
MESSAGE_SCHEMA = pa.schema([
    ("run", pa.string()), ("episode", pa.int64()), ("step", pa.int32()), ("round", pa.int32()),
    ("protocol", pa.string()), ("phase", pa.string()), ("ask", pa.int32()), ("role", pa.string()),
    ("seat", pa.int32()), ("agent", pa.string()), ("model", pa.string()), ("model_version", pa.int64()),
    ("messages", pa.string()), ("asked", pa.string()), ("temperature", pa.float64()),
    ("top_p", pa.float64()), ("max_new_tokens", pa.int32()), ("seed", pa.int64()),
    ("reply", pa.string()), ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()),
    ("finish_reason", pa.string()), ("error", pa.string()), ("latency_s", pa.float64()),
    ("started", pa.float64()), ("ended", pa.float64()), ("notes", pa.string()),
])
MESSAGES = TypeAdapter(tuple[ChatMessage, ...])
FORMAT_FILE = "format.json"


class LogFormatError(ValueError):
    """A log folder written in another record format; the message says which and what to do."""


class LogDamaged(ValueError):
    """A segment of the log that cannot be read, or a line that is not a record; names which.
    (A torn last line is not damage: a killed driver leaves one, and it is dropped.)"""


class DialogueLog:
    """Append-only, crash-safe log of episode steps for one run."""

    def __init__(self, run_dir: str | Path, segment_rows: int = 20_000, shard: int | None = None):
        """``shard``: None for the run's only writer, which also recovers what any shard left;
        a shard's number for one of several writers, which recovers only its own segments."""
        self.folder = Path(run_dir) / "log"
        self.tag = f"s{shard:03d}-" if shard else ""  # this writer's segments; shard 0's are untagged
        self.recovers = "live-*" if shard is None else f"live-{self.tag or '[0-9]'}*"
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / FORMAT_FILE).exists() and not any(self.folder.iterdir()):
            (self.folder / FORMAT_FILE).write_text(json.dumps({"format": LOG_FORMAT}))
        self.patching = check_format(self.folder) >= 3  # a format-2 log goes on holding whole states
        self._memories: dict[int, Memory] = {}  # per in-flight episode: what its last written step said
        self.segment_rows = segment_rows
        self._recover()
        self.segment = self._next_segment_number()
        self._file = None
        self._segment = Segment()  # the live segment's tables, to compact it without re-reading

    # -- writing --
    def append(self, records: list[StepRecord]) -> None:
        """Write step records and make them durable (flush + fsync) before returning."""
        if not records:
            return
        if self._file is None:
            self._file = open(self._live_path(self.segment), "a", encoding="utf-8")
        lines = [self._line(r) for r in records]
        self._file.write("".join(line + "\n" for line in lines))
        self._file.flush()
        os.fsync(self._file.fileno())
        for record, line in zip(records, lines):
            self._segment.add(record, line)
        if len(self._segment) >= self.segment_rows:
            self._compact_live()

    def _line(self, record: StepRecord) -> str:
        """The record as one JSON line, written as changes to the episode's previous step where
        this log object wrote that step (``log_encoding``); a format-2 log keeps whole records."""
        if not self.patching:
            return record.model_dump_json()
        return to_json(encode(record.model_dump(mode="json"), self._memories)).decode()

    def close(self) -> None:
        """Compact the live segment; the log is then all Parquet."""
        self._compact_live()

    def _compact_live(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        live = self._live_path(self.segment)
        if live.exists():
            self._segment.write(self.folder, f"{self.tag}{self.segment:05d}")
            live.unlink()
        self.segment += 1
        self._segment = Segment()

    # -- reading --
    def steps(self) -> Iterator[StepRecord]:
        """Every step record, in write order (compacted segments first, then the live one)."""
        yield from read_steps(self.folder.parent)

    # -- housekeeping --
    def _live_path(self, n: int) -> Path:
        return self.folder / f"live-{self.tag}{n:05d}.jsonl"

    def _next_segment_number(self) -> int:
        numbers = [_segment_number(p) for p in self.folder.glob(f"steps-{self.tag or '[0-9]'}*.parquet")]
        return max(numbers, default=-1) + 1

    def _recover(self) -> None:
        """After a crash: drop a torn last line, and finish any compaction that was interrupted."""
        memories = None  # what the segments before a leftover live one say; read once, carried on
        for live in sorted(self.folder.glob(self.recovers)):
            name = _segment_name(live)
            if (self.folder / f"steps-{name}.parquet").exists():
                live.unlink()  # the Parquet copy was complete (written under a temp name, renamed)
                continue
            drop_torn_tail(live)
            lines = list(_jsonl_lines(live))
            memories = compacted_memories(self.folder) if memories is None else memories
            records = list(decoded(lines, None, memories))  # LogDamaged names a bad line
            segment_of(records, [line.rstrip("\n") for line, _ in lines]).write(self.folder, name)
            live.unlink()


def check_format(folder: Path) -> int:
    """The log's record format; a format this academe cannot read (an older run folder) is refused."""
    marker = folder / FORMAT_FILE
    written = json.loads(marker.read_text()).get("format") if marker.is_file() else 1
    if written not in READABLE_FORMATS:
        raise LogFormatError(
            f"{folder.parent} holds a log in record format {written}; this academe reads formats "
            f"{' and '.join(map(str, READABLE_FORMATS))}. "
            "Read it with the academe version that wrote it, or run the config again "
            f"(its config is {folder.parent / 'config.yaml'})")
    return written


def drop_torn_tail(path: Path) -> None:
    data = path.read_bytes()
    keep = data if data.endswith(b"\n") else data[: data.rfind(b"\n") + 1]
    if keep != data:
        with open(path, "wb") as f:
            f.write(keep)
            f.flush()
            os.fsync(f.fileno())


class Segment:
    """A segment's two tables, filled column by column as its records are written. Columns of
    plain values, not the records themselves: with 10,000 episodes in flight the records of a
    segment would be millions of objects for the memory and the garbage collector to carry."""

    def __init__(self):
        self.steps: dict[str, list] = {c: [] for c in (*STEP_KEYS, "record")}
        self.messages: dict[str, list] = {c: [] for c in MESSAGE_SCHEMA.names}

    def __len__(self) -> int:
        return len(self.steps["record"])

    def add(self, record: StepRecord, line: str) -> None:
        for c in STEP_KEYS:
            self.steps[c].append(getattr(record, c))
        self.steps["record"].append(line)
        self.add_turns(record)

    def add_turns(self, record: StepRecord) -> None:
        """The record's turns as rows of the messages table."""
        if not record.turns:
            return
        notes, m = json.dumps(record.notes), self.messages
        for turn in record.turns:
            prompt, reply, sampling = turn.prompt, turn.reply, turn.prompt.sampling
            for column, value in (
                ("run", record.run), ("episode", record.episode), ("step", record.step), ("round", record.round),
                ("protocol", record.protocol), ("phase", record.phase), ("ask", turn.index), ("role", turn.role),
                ("seat", turn.seat), ("agent", turn.agent), ("model", reply.model),
                ("model_version", reply.model_version), ("messages", MESSAGES.dump_json(prompt.messages).decode()),
                ("asked", MESSAGES.dump_json(turn.asked).decode()), ("temperature", sampling.temperature),
                ("top_p", sampling.top_p), ("max_new_tokens", sampling.max_new_tokens), ("seed", prompt.seed),
                ("reply", reply.text), ("prompt_tokens", reply.prompt_tokens),
                ("completion_tokens", reply.completion_tokens), ("finish_reason", reply.finish_reason),
                ("error", reply.error), ("latency_s", reply.latency_s), ("started", turn.started),
                ("ended", turn.ended), ("notes", notes)):
                m[column].append(value)

    def messages_table(self) -> pa.Table:
        return pa.table(self.messages, schema=MESSAGE_SCHEMA)

    def write(self, folder: Path, name: str) -> None:
        """As steps/messages Parquet files, each written under a temp name and renamed."""
        if len(self):
            _write_atomic(pa.table(self.steps), folder / f"steps-{name}.parquet")
            _write_atomic(self.messages_table(), folder / f"messages-{name}.parquet")


def segment_of(records: Iterable[StepRecord], lines: Iterable[str]) -> Segment:
    segment = Segment()
    for record, line in zip(records, lines):
        segment.add(record, line)
    return segment


def _write_atomic(table: pa.Table, path: Path) -> None:
    partial = path.with_suffix(".partial")
    pq.write_table(table, partial, compression="zstd")
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    partial.rename(path)


def _jsonl_lines(path: Path) -> Iterator[tuple[str, str]]:
    """A live segment's whole lines (a torn last one is not yet a record), each with where it is."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.endswith("\n"):
                yield line, f"{path} line {number}"


def decoded(lines: Iterable[tuple[str | dict, str]], damaged: list[str] | None,
            memories: dict[int, Memory] | None = None) -> Iterator[StepRecord]:
    """Step records from log lines in write order, each whole again; a line that is not a record
    (or depends on one that is missing) raises ``LogDamaged``, or is noted in ``damaged``."""
    memories = {} if memories is None else memories
    for line, where in lines:
        try:
            data = json.loads(line) if isinstance(line, str) else line  # a line, or one parsed already
            yield StepRecord.model_validate(decode(data, memories))
        except (ValueError, KeyError, TypeError) as exc:
            if damaged is None:
                raise LogDamaged(f"{where} is not a step record: {str(exc).splitlines()[0]}") from None
            damaged.append(f"{where}: not a step record ({str(exc).splitlines()[0]})")


def _log_folder(run_dir: str | Path) -> Path:
    folder = Path(run_dir) / "log"
    if not folder.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder: a run folder holds config.yaml and log/ "
                                "(the dialogue log), as `academe run` makes them")
    check_format(folder)
    return folder


def read_steps(run_dir: str | Path, episodes: range | None = None,
               damaged: list[str] | None = None) -> Iterator[StepRecord]:
    """Step records of a run (of the episodes in ``episodes`` only, if given), in write order, each
    whole (its state, its turns' prompts).

    A damaged log (a cut segment, a garbage line) raises ``LogDamaged`` naming the file and line;
    pass a list as ``damaged`` to read what is whole instead and collect those notes in it.
    """
    yield from decoded(_logged_lines(run_dir, episodes, damaged), damaged)


def _logged_lines(run_dir: str | Path, episodes: range | None, damaged: list[str] | None):
    """The log's lines as written, in write order, each with where it is."""
    folder = _log_folder(run_dir)
    where = None if episodes is None else [("episode", ">=", episodes.start), ("episode", "<", episodes.stop)]
    for path in sorted(folder.glob("steps-*.parquet")):
        yield from _segment_lines(path, where, damaged)
    for live in sorted(folder.glob("live-*.jsonl")):
        for line, at in _jsonl_lines(live):
            if episodes is None:
                yield line, at
                continue
            try:
                data = json.loads(line)
            except ValueError:
                yield line, at  # not a record: decoding it reports it
                continue
            if not isinstance(data, dict) or data.get("episode") in episodes:
                yield data, at  # a record of these episodes, or not a record (decoding reports it)


def _segment_lines(path: Path, where, damaged: list[str] | None) -> Iterator[tuple[str, str]]:
    try:
        lines = pq.read_table(path, columns=["record"], filters=where).column("record").to_pylist()
    except (OSError, pa.ArrowException) as exc:
        if damaged is None:
            raise LogDamaged(f"{path} cannot be read: {exc}") from None
        damaged.append(f"{path}: cannot be read ({exc}); its steps are left out")
        return
    yield from ((line, f"{path} row {row}") for row, line in enumerate(lines))


class LogTail:
    """A run's log read as it grows: each ``read()`` returns the records written since the previous
    one, whole, once each, across segments compacted in between. A training phase reads its new
    data so instead of the whole log again."""

    def __init__(self, run_dir: str | Path):
        self.folder = _log_folder(run_dir)
        self.memories: dict[int, Memory] = {}  # the decoder's, carried from read to read
        self.finished: set[str] = set()  # segments read to their end (compacted), by name
        self.taken: dict[str, tuple[int, int]] = {}  # live segment -> (whole lines read, bytes read)

    def read(self) -> list[StepRecord]:
        lines: list[tuple[str, str]] = []
        for path in sorted(self.folder.glob("steps-*.parquet")):
            n = _segment_name(path)
            if n not in self.finished:
                already, _ = self.taken.pop(n, (0, 0))
                lines += list(_segment_lines(path, None, None))[already:]
                self.finished.add(n)
        for path in sorted(self.folder.glob("live-*.jsonl")):
            n = _segment_name(path)
            if n not in self.finished:
                lines += self._new_lines(path, n)
        return list(decoded(lines, None, self.memories))

    def _new_lines(self, path: Path, n: str) -> list[tuple[str, str]]:
        count, offset = self.taken.get(n, (0, 0))
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:  # compacted since the listing: read from its Parquet next time
            return []
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        new = whole.decode("utf-8", errors="replace").splitlines(keepends=True)
        self.taken[n] = (count + len(new), offset + len(whole))
        return [(line, f"{path} line {count + i}") for i, line in enumerate(new, 1)]


def _segment_number(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])


def _segment_name(path: Path) -> str:
    """A segment's name without its kind: "00003", or "s001-00003" for a shard's."""
    return path.stem.split("-", 1)[1]


def read_messages(run_dir: str | Path) -> pa.Table:
    """Every turn of a run as one table: the documented way to read a log.

    Columns: run, episode, step, round, protocol, phase, ask, role, seat, agent, model,
    model_version, messages (the prompt as sent, JSON), asked (the prompt the protocol built, JSON),
    temperature, top_p, max_new_tokens, seed, reply, prompt_tokens, completion_tokens,
    finish_reason, error, latency_s, started, ended, notes (JSON).
    """
    folder = _log_folder(run_dir)
    tables = [pq.read_table(p, schema=MESSAGE_SCHEMA) for p in sorted(folder.glob("messages-*.parquet"))]
    live = Segment()
    for record in _live_records(folder):
        live.add_turns(record)
    if live.messages["run"]:
        tables.append(live.messages_table())
    return pa.concat_tables(tables) if tables else MESSAGE_SCHEMA.empty_table()


def compacted_memories(folder: Path) -> dict[int, Memory]:
    """What the compacted segments say of each unfinished episode: a live segment's lines may be
    written as changes to them."""
    memories: dict[int, Memory] = {}
    for path in sorted(folder.glob("steps-*.parquet")):
        for _ in decoded(_segment_lines(path, None, None), None, memories):
            pass
    return memories


def _live_records(folder: Path) -> Iterator[StepRecord]:
    """The records of the live segments, decoded against everything compacted before them."""
    lines = (line for p in sorted(folder.glob("live-*.jsonl")) for line in _jsonl_lines(p))
    yield from decoded(lines, None, compacted_memories(folder))
