"""Concurrent recommendation requests served together: one model pass for a whole batch.

``/v1/recommend`` spends most of its model time in per-call overhead (one query-tower pass,
one sparse kNN row, one z-scoring of the catalog for ONE history), so requests that arrive
while another is computing wait for it and are then served in one
:meth:`~recagent.retrieval.base.Retriever.recommend_many` call (a leader/follower queue: the
first waiting request takes everything queued, up to ``max_batch``, holds a compute slot for
the batch and hands each request its own answer). A request gets what it would get alone:
every row of a retriever's ``score`` depends on its own history only.

A batch that fails is served again one request at a time, so one bad request fails alone.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from recagent.retrieval.base import Recommendation, RecommendRequest, Retriever
from recagent.server.slots import ComputeSlots

__all__ = ["RecommendBatcher"]


@dataclass
class _Job:
    request: RecommendRequest
    result: list[Recommendation] | None = None
    error: Exception | None = None
    done: bool = False


class RecommendBatcher:
    """``max_batch`` 1 serves every request alone (each in its own compute slot)."""

    def __init__(self, slots: ComputeSlots, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.slots = slots
        self.max_batch = max_batch
        self._pending: list[_Job] = []
        self._leading = False
        self._cond = threading.Condition()
        self.batches = 0
        self.served = 0
        self.waiting = 0  # requests in, not answered yet

    def recommend(self, model: Retriever, request: RecommendRequest) -> list[Recommendation]:
        """``model.recommend`` for ``request``, batched with the requests waiting beside it."""
        job = _Job(request)
        with self._cond:
            self._pending.append(job)
            self.waiting += 1
        while True:
            with self._cond:
                while not job.done and self._leading:
                    self._cond.wait()
                if job.done:
                    break
                self._leading = True
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
            try:
                with self.slots.acquire():
                    _serve(model, batch)
            finally:
                with self._cond:
                    for j in batch:
                        j.done = True
                    self.batches += 1
                    self.served += len(batch)
                    self.waiting -= len(batch)
                    self._leading = False
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        if job.result is None:
            raise RuntimeError("the batch that held this request was interrupted")
        return job.result


def _serve(model: Retriever, batch: list[_Job]) -> None:
    """Every job's result or error (the leader's thread never raises another's error)."""
    try:
        results = model.recommend_many([j.request for j in batch])
    except Exception as exc:  # noqa: BLE001 - each request is retried alone and fails alone
        if len(batch) == 1:
            batch[0].error = exc
            return
        for j in batch:
            _serve(model, [j])
        return
    for j, result in zip(batch, results, strict=True):
        j.result = result
