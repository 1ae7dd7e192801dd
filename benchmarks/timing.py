"""Latency measurement: warm-up, then timed calls until a minimum time AND a minimum count are reached.

MLPerf SingleStream style: each call is timed alone with `time.perf_counter` (plus the target's device
sync where it has one), p90 is the headline and a high coefficient of variation is flagged, because a
noisy p90 on a board that throttles or shares its cores is not a number to trust.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Callable, Sequence

import numpy as np

from edge_msa.errors import InputError

CV_WARN = 0.10  # std/mean above this: the report says the row is noisy
STAGE_CALLS = 10  # extra predict_batch calls per row for its per-stage figures, at least; then more, up to one per
STAGE_BUDGET_S = 1.0  # timed batch, until this many seconds of them have passed


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latencies summarised; `items_per_call` turns calls/s into items/s."""

    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    cv: float
    runs: int
    warmup: int
    total_s: float
    throughput: float  # items per second over the timed calls

    def latency_ms(self) -> dict[str, float]:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99, "mean": self.mean}

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(latencies_ms: np.ndarray, items_per_call: int, warmup: int = 0) -> LatencyStats:
    """Percentiles (numpy 'linear', as timm/MLPerf loadgen report them), mean, CV and items/s."""
    lat = np.asarray(latencies_ms, dtype=np.float64).reshape(-1)
    if lat.size == 0 or not np.isfinite(lat).all() or (lat < 0).any():
        raise InputError(f"latencies must be a non-empty array of finite ms >= 0; got {lat.size} values")
    p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99]))
    mean, std = float(lat.mean()), float(lat.std(ddof=1)) if lat.size > 1 else 0.0
    total_s = float(lat.sum()) / 1e3
    return LatencyStats(p50=p50, p90=p90, p99=p99, mean=mean, std=std, cv=std / mean if mean > 0 else 0.0,
                        runs=int(lat.size), warmup=warmup, total_s=total_s,
                        throughput=items_per_call * lat.size / total_s if total_s > 0 else float("inf"))


BLOCK_S = 0.25  # timed seconds a bundle runs before the next takes over (see measure_side_by_side)
SIDE_BY_SIDE = f"timed side by side in alternating blocks of {BLOCK_S:g} timed seconds, each after one untimed call"


def measure_side_by_side(calls: Sequence[Callable[[int], object]], items_per_call: int, warmup: int = 10,
                         min_time_s: float = 2.0, min_runs: int = 20, max_runs: int | None = None,
                         sync: Callable[[], None] | None = None, clock: Callable[[], float] = time.perf_counter,
                         block_s: float = BLOCK_S) -> list[LatencyStats | Exception]:
    """Time several calls in alternating blocks: after every call's warm-up, the one with the least timed seconds so
    far (then the fewest runs) runs a block of about `block_s` timed seconds, until each has `min_time_s` and
    `min_runs` (or `max_runs`).

    Why blocks: timed one after another, a burst of background load or throttling during one bundle's turn moved the
    ratio between bundles; alternating every `block_s`, load that comes and goes falls on all of them alike, so ratios
    from one run hold. Why not call by call: a small model timed right after a large one ran with caches the large
    one had flushed (the fp32 student read 1.50 ms p50 interleaved call by call, 1.05 ms in warm calls), which no
    device running one model sees; each block starts with one untimed call to warm them again. A call that raises
    drops out and its entry is the exception; the others go on."""
    if warmup < 0 or min_runs < 1 or min_time_s < 0:
        raise InputError(f"need warmup >= 0, min_runs >= 1, min_time >= 0; got {warmup}, {min_runs}, {min_time_s}")
    timers = [_Timer(call, sync, clock) for call in calls]
    for timer in timers:
        timer.guarded(partial(timer.warm, warmup))
    live, previous = [t for t in timers if t.failed is None], timers[-1] if warmup and timers else None  # who ran last
    done = lambda t: (t.spent >= min_time_s and len(t.lat) >= min_runs) or len(t.lat) == max_runs  # noqa: E731
    while live and not all(done(t) for t in live):
        timer = min((t for t in live if not done(t)), key=lambda t: (t.spent, len(t.lat)))
        timer.guarded(lambda: timer.block(warmup, block_s, lambda: done(timer), rewarm=previous not in (None, timer)))
        live, previous = [t for t in live if t.failed is None], timer
    return [t.failed or summarize(np.array(t.lat), items_per_call, warmup) for t in timers]


class _Timer:
    """One call's timed runs for measure_side_by_side."""

    def __init__(self, call: Callable[[int], object], sync: Callable[[], None] | None,
                 clock: Callable[[], float]) -> None:
        self.call, self.sync, self.clock = call, sync, clock
        self.lat: list[float] = []
        self.spent = 0.0
        self.failed: Exception | None = None

    def run(self, i: int) -> float:
        start = self.clock()
        self.call(i)
        if self.sync is not None:
            self.sync()
        return self.clock() - start

    def warm(self, warmup: int) -> None:
        """The untimed warm-up calls (JIT, allocations, caches), before any block of any call is timed."""
        for i in range(warmup):
            self.run(i)

    def block(self, warmup: int, block_s: float, done: Callable[[], bool], rewarm: bool) -> None:
        """Timed calls for `block_s`, after one untimed call when another bundle's block ran last (`rewarm`)."""
        if rewarm:
            self.run(warmup + len(self.lat))
        spent = 0.0
        while spent < block_s and not done():
            dt = self.run(warmup + len(self.lat))
            self.lat.append(dt * 1e3)
            self.spent += dt
            spent += dt

    def guarded(self, work: Callable[[], object]) -> None:
        try:
            work()
        except Exception as exc:  # this call drops out; the others are still timed
            self.failed = exc
