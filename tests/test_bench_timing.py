"""Timing harness: percentiles, run count from min time / min runs, warm-up excluded, real sleeps."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edge_msa.benchmarks.timing import measure, summarize
from edge_msa.errors import InputError


class FakeClock:
    """A clock that only moves when a fake call 'takes' time: exact, load-independent timing tests."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_percentiles_match_numpy_linear_and_throughput_counts_items():
    lat = np.arange(1, 101, dtype=float)  # 1..100 ms
    s = summarize(lat, items_per_call=4)
    assert (s.p50, s.p90, s.p99) == pytest.approx((50.5, 90.1, 99.01))
    assert s.mean == pytest.approx(50.5)
    assert s.cv == pytest.approx(np.std(lat, ddof=1) / 50.5)
    assert s.throughput == pytest.approx(4 * 100 / (lat.sum() / 1e3))  # items/s over summed call time


def test_summarize_rejects_empty_or_negative():
    with pytest.raises(InputError):
        summarize(np.array([]), 1)
    with pytest.raises(InputError):
        summarize(np.array([1.0, -2.0]), 1)


def test_warmup_excluded_and_run_count_from_min_time():
    clock = FakeClock()
    # 3 slow warm-up calls (500 ms), then 1/64 s calls (exact in binary, so 64 of them sum to exactly 1 s)
    durations = {i: (0.5 if i < 3 else 1 / 64) for i in range(1000)}
    seen = []

    def call(i):
        seen.append(i)
        clock.now += durations[i]

    s = measure(call, items_per_call=1, warmup=3, min_time_s=1.0, min_runs=5, clock=clock)
    assert s.warmup == 3 and seen[:3] == [0, 1, 2]
    assert s.runs == 64  # 1.0 s of 15.625 ms calls; warm-up time not counted
    assert s.p50 == pytest.approx(15.625) and s.p99 == pytest.approx(15.625)  # the 500 ms warm-ups are excluded


def test_min_runs_wins_over_min_time_and_max_runs_caps():
    clock = FakeClock()

    def call(i):
        clock.now += 0.2

    assert measure(call, 1, warmup=0, min_time_s=0.1, min_runs=7, clock=clock).runs == 7
    assert measure(call, 1, warmup=0, min_time_s=100, min_runs=1, max_runs=4, clock=clock).runs == 4


def test_sync_is_inside_the_timed_region():
    clock = FakeClock()

    def call(i):
        clock.now += 0.001

    def sync():  # a device sync that takes 4 ms must be counted
        clock.now += 0.004

    s = measure(call, 1, warmup=2, min_time_s=0, min_runs=10, sync=sync, clock=clock)
    assert s.p50 == pytest.approx(5.0)


def test_real_sleeps_give_the_known_latency():
    s = measure(lambda i: time.sleep(0.004), items_per_call=2, warmup=2, min_time_s=0.1, min_runs=10)
    assert 4.0 <= s.p50 < 9.0  # sleep overshoots a little, never undershoots; loose bound for a busy CI box
    assert s.runs >= 10 and s.throughput == pytest.approx(2 * s.runs / s.total_s)
