"""First come, first served access to the models: how many requests compute at once.

The encoder and the LLM share the machine's cores, and their tokenizers are not safe to call
from several threads at once, so by default one request computes at a time and the others
wait in arrival order (a plain lock is not fair: under load, late arrivals could overtake).
HTTP, the database and streaming stay concurrent; only the model work queues.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ComputeSlots"]


class ComputeSlots:
    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError("compute slots must be >= 1")
        self.slots = slots
        self._busy = 0
        self._queue: deque[object] = deque()
        self._cond = threading.Condition()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @contextmanager
    def acquire(self, on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
        """Hold a slot for the block; ``on_wait(ahead)`` is called once if the caller queues."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            if on_wait is not None and (self._busy >= self.slots or self._queue[0] is not ticket):
                on_wait(len(self._queue) - 1 + self._busy)
            while self._queue[0] is not ticket or self._busy >= self.slots:
                self._cond.wait()
            self._queue.popleft()
            self._busy += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()
