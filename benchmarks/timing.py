"""Latency measurement: warm-up, then timed calls until a minimum time AND a minimum count are reached.

MLPerf SingleStream style: each call is timed alone with `time.perf_counter` (plus the target's device
sync where it has one), p90 is the headline and a high coefficient of variation is flagged, because a
noisy p90 on a board that throttles or shares its cores is not a number to trust.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from edge_msa.errors import InputError

CV_WARN = 0.10  # std/mean above this: the report says the row is noisy


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


def measure(call: Callable[[int], object], items_per_call: int, warmup: int = 10, min_time_s: float = 2.0,
            min_runs: int = 20, max_runs: int | None = None, sync: Callable[[], None] | None = None,
            clock: Callable[[], float] = time.perf_counter) -> LatencyStats:
    """Time `call(i)` (i = run index, so callers can cycle inputs) after `warmup` untimed calls.

    Timed runs continue until both `min_time_s` of summed call time and `min_runs` calls are reached
    (or `max_runs`, a cap for tests and very slow models). An exception from `call` propagates.
    """
    result = measure_side_by_side([call], items_per_call, warmup, min_time_s, min_runs, max_runs, sync, clock)[0]
    if isinstance(result, Exception):
        raise result
    return result


def measure_side_by_side(calls: Sequence[Callable[[int], object]], items_per_call: int, warmup: int = 10,
                         min_time_s: float = 2.0, min_runs: int = 20, max_runs: int | None = None,
                         sync: Callable[[], None] | None = None,
                         clock: Callable[[], float] = time.perf_counter) -> list[LatencyStats | Exception]:
    """Time several calls interleaved: after every call's warm-up, the one with the least timed seconds so far
    (then the fewest runs) runs next, until each has `min_time_s` and `min_runs` (or `max_runs`).

    Why: timed one after another, a burst of background load or throttling during one bundle's turn moved the
    ratio between bundles; interleaved, load that comes and goes falls on all of them alike, so ratios from one
    run hold. Each call's runs are spread over the whole measurement. A call that raises drops out and its entry
    is the exception; the others go on."""
    if warmup < 0 or min_runs < 1 or min_time_s < 0:
        raise InputError(f"need warmup >= 0, min_runs >= 1, min_time >= 0; got {warmup}, {min_runs}, {min_time_s}")
    lat: list[list[float]] = [[] for _ in calls]
    spent = [0.0] * len(calls)
    failed: dict[int, Exception] = {}

    def run(k: int, i: int) -> float:
        start = clock()
        calls[k](i)
        if sync is not None:
            sync()
        return clock() - start

    for k in range(len(calls)):
        try:
            for i in range(warmup):
                run(k, i)
        except Exception as exc:  # this call drops out; the others are still timed
            failed[k] = exc
    live = [k for k in range(len(calls)) if k not in failed]
    while live and any(spent[k] < min_time_s or len(lat[k]) < min_runs for k in live):
        k = min(live, key=lambda j: (spent[j], len(lat[j])))
        try:
            dt = run(k, warmup + len(lat[k]))
        except Exception as exc:
            failed[k] = exc
            live.remove(k)
            continue
        lat[k].append(dt * 1e3)
        spent[k] += dt
        if max_runs is not None and len(lat[k]) >= max_runs:
            live.remove(k)
    return [failed.get(k) or summarize(np.array(lat[k]), items_per_call, warmup) for k in range(len(calls))]
