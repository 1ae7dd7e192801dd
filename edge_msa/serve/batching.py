"""Micro-batching: requests that arrive together run as one `predict_batch` call on one worker thread.

Hand-written because the pieces the field offers do not fit: uvicorn's `--limit-concurrency` bounds
connections, not queued model work, and batching helpers of model servers (Triton, TorchServe, Ray
Serve) come with their own process model. This is a bounded deque, a condition variable and one thread
that owns the predictor (ONNX Runtime already uses the cores inside each call).
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Sequence

from ..errors import InputError, check_range, given
from ..runtime.predictor import BrokenModel, ItemError

BatchFn = Callable[[Sequence[Any]], list]


class QueueFull(Exception):
    """The queue cannot take these inputs now; retry after `retry_after` seconds. The message (the 429's, beside
    its Retry-After header) says why and when to come back, for a client that shows errors but not headers."""

    def __init__(self, retry_after: int, why: str) -> None:
        super().__init__(f"server busy ({why}); expected a retry after {retry_after} s (the Retry-After header)")
        self.retry_after = retry_after


class Stopped(Exception):
    """The batcher takes no inputs: it was closed (the server is going away) or its worker died on a bug. A 503 (as
    /healthz answers then), not a 429 "too many requests"; Retry-After 1 s, for a client whose retry reaches the
    restarted server or another replica."""

    RETRY_AFTER = 1

    def __init__(self, why: str | None = None) -> None:
        super().__init__(f"not serving: {why or 'the server is shutting down'}; expected a retry after "
                         f"{self.RETRY_AFTER} s (the Retry-After header)")


class MicroBatcher:
    """Collects up to `max_batch` inputs, waiting at most `max_wait_ms` after the first, then runs them as
    one call. `max_batch=1` turns batching off (one call per input). At most `max_queue` inputs wait."""

    def __init__(self, run_batch: BatchFn, max_batch: int, max_wait_ms: float, max_queue: int,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        check_range({"max_batch": max_batch}, 1, strict=False, whole=True)  # as given: serve's flag, or the keyword
        check_range({"max_wait_ms": max_wait_ms}, 0, strict=False)  # NaN/inf: wait forever
        check_range({"max_queue": max_queue}, max_batch, strict=False, whole=True,
                    why=f"{given('max_batch', max_batch)}: a full batch must fit in the queue")
        self.run_batch, self.on_batch = run_batch, on_batch
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1e3, max_queue
        self._jobs: deque[tuple[Any, Future]] = deque()
        self._cv = threading.Condition()
        self._closing = False
        self._died: str | None = None  # set as the worker dies on an error (see _loop)
        # called (on the worker thread) once it died and answered what it held: `edge-msa serve` stops the server
        self.on_death: Callable[[], None] | None = None
        self._seconds_per_batch = 0.01  # running mean, for Retry-After
        self._thread = threading.Thread(target=self._loop, name="edge-msa-batcher", daemon=True)

    def start(self) -> "MicroBatcher":
        self._thread.start()
        return self

    @property
    def depth(self) -> int:
        return len(self._jobs)

    @property
    def refusal(self) -> Stopped | None:
        """Why inputs are not taken now (None while they are): close() began the shutdown, or the worker died. One
        rule: submit raises it and /healthz answers it, so a probe and a client agree."""
        return Stopped(self._died) if self._died or self._closing else None

    @property
    def started(self) -> bool:
        """Whether start ran (its worker may have stopped since: see refusal); until it does, nothing runs inputs."""
        return self._thread.ident is not None

    @property
    def died(self) -> str | None:
        """Why the worker died on an error that escaped it (None while it did not): the server's exit line."""
        return self._died

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def submit(self, items: Sequence[Any]) -> list[Future]:
        """Queue all `items` or none of them (QueueFull; Stopped once closed); each future resolves to its
        Prediction."""
        with self._cv:
            refusal = self.refusal
            if refusal:
                raise refusal
            if len(self._jobs) + len(items) > self.max_queue:
                waves = math.ceil((len(self._jobs) + len(items)) / self.max_batch)
                why = f"{len(self._jobs)} inputs queued, {len(items)} more would pass the limit of {self.max_queue}"
                raise QueueFull(max(1, math.ceil(waves * self._seconds_per_batch)), why)
            futures: list[Future] = [Future() for _ in items]
            self._jobs.extend(zip(items, futures))
            self._cv.notify()
        return futures

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking inputs, finish the queued ones, then stop the worker."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        batch: list[tuple[Any, Future]] | None = []
        try:
            while (batch := self._next_batch()) is not None:
                self._run(batch)
        except BaseException as exc:
            self._die(exc, batch or [])
            raise  # the thread's traceback goes to the server log

    def _die(self, exc: BaseException, batch: list[tuple[Any, Future]]) -> None:
        """The worker is going away on an error that escaped it (a bug): from now on refuse inputs as a closed batcher
        does, and answer the inputs it will not run (the batch it held, the queue) with the same Stopped; they used to
        wait for their clients' timeouts while /healthz already said 503. Then on_death: a process whose only worker
        is gone serves nothing but 503s, so `edge-msa serve` exits to be restarted rather than run on."""
        with self._cv:
            self._died = f"the batch worker stopped on {type(exc).__name__} (see the server log)"
            orphans = [*batch, *self._jobs]
            self._jobs.clear()
        for _, future in orphans:
            if not future.done():  # cancelled, or answered before the error
                future.set_exception(Stopped(self._died))
        if self.on_death:
            self.on_death()

    def _run(self, batch: list[tuple[Any, Future]]) -> None:
        """One batch, timed for Retry-After and on_batch (empty when all its inputs were cancelled: nothing runs)."""
        if not batch:
            return
        start = time.perf_counter()
        self._execute(batch)
        seconds = time.perf_counter() - start
        self._seconds_per_batch = 0.9 * self._seconds_per_batch + 0.1 * seconds
        if self.on_batch:
            self.on_batch(len(batch), seconds)

    def _next_batch(self) -> list[tuple[Any, Future]] | None:
        """Block for the first job, then gather more until max_batch or max_wait; None once closed and empty."""
        with self._cv:
            while not self._jobs:
                if self._closing:
                    return None
                self._cv.wait()
            deadline = time.monotonic() + self.max_wait
            while len(self._jobs) < self.max_batch and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            batch = [self._jobs.popleft() for _ in range(min(self.max_batch, len(self._jobs)))]
        # a request that was cancelled meanwhile (its client's task) is dropped; the rest cannot be cancelled now
        return [job for job in batch if job[1].set_running_or_notify_cancel()]

    def _execute(self, batch: list[tuple[Any, Future]]) -> None:
        """Run one batch. An input error that names its input (ItemError) fails just that request, with the error
        it would get alone, and the rest run again as one batch; one that names none reruns the inputs one by one,
        so only the bad ones fail. So does a score that is no number (BrokenModel): the predictor checks the batch's
        scores together, and a NaN only one client's input reaches (an overflow on its values) was a 500 for every
        client of its micro-batch; alone, the others are answered and only that input's request gets the 500.
        Only these rare paths rerun: a sound batch costs nothing more."""
        while batch:
            try:
                results = self.run_batch([item for item, _ in batch])
            except ItemError as exc:  # only raised for a batch of several, so some are left to rerun
                batch.pop(exc.index)[1].set_exception(InputError(exc.reason))
                continue
            except (InputError, BrokenModel) as exc:
                if len(batch) > 1:
                    for job in batch:
                        self._execute([job])
                    return
                batch[0][1].set_exception(exc)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting request, which answers 500
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results):
                    future.set_result(result)
            return
