"""Garbage collection paced by the heap's growth while the runner holds thousands of episodes.

CPython's generational collector rescans young objects every few hundred allocations and the
whole heap each time it grows by a quarter. A runner with 10,000 episodes in flight allocates
millions of records that live as long as their episode, so those scans took half of its time
(measured by ``bench/framework_overhead.py``). While it runs, automatic collection is off and a
full collection runs whenever the tracked objects have doubled since the last one: the cost of a
collection stays proportional to the objects created since, and memory held by reference cycles
is bounded by the live heap. Objects without cycles (almost all records) are freed at once by
reference counting either way. What existed before the run (modules, torch, a model) is frozen
out of these collections: scanning it once took longer than a whole short run.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

FLOOR = 100_000  # never collect more often than every this many new objects


class Pacer:
    def __init__(self):
        self.allowance = FLOOR

    def tick(self) -> None:
        """Call between batches: collects if the objects made since the last collection outnumber
        those that survived it."""
        if gc.get_count()[0] > self.allowance:
            self.collect()

    def collect(self) -> None:
        gc.collect()
        self.allowance = max(FLOOR, len(gc.get_objects()))


@contextmanager
def paced_gc() -> Iterator[Pacer]:
    enabled = gc.isenabled()
    gc.disable()
    gc.freeze()  # what the process held before the run is not scanned again while it runs
    try:
        yield Pacer()
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
