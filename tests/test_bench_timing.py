"""Timing harness: percentiles, run count from min time / min runs, warm-up excluded, real sleeps."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edge_msa.benchmarks.timing import measure_side_by_side, summarize
from edge_msa.errors import InputError


class FakeClock:
    """A clock that only moves when a fake call 'takes' time: exact, load-independent timing tests."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def measure(call, *args, **kwargs):
    """One call timed alone: measure_side_by_side with nothing beside it."""
    (result,) = measure_side_by_side([call], *args, **kwargs)
    assert not isinstance(result, Exception), result
    return result


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


def test_side_by_side_ratios_survive_a_burst_of_load():
    """Bundle A takes 1 ms, B 4 ms, and every call takes 3x as long in the first second (other jobs, throttling).
    Timed one after the other, A got the whole burst and B none (p50 3 ms vs 4 ms: a 1.3x ratio); interleaved,
    the burst falls on both alike and the medians keep the true 4x."""
    clock = FakeClock()

    def call(base_s):
        def one(i):
            clock.now += base_s * (3 if clock.now < 1.0 else 1)
        return one

    a, b = measure_side_by_side([call(0.001), call(0.004)], 1, warmup=0, min_time_s=1.0, min_runs=5, clock=clock)
    assert b.p50 / a.p50 == pytest.approx(4.0)
    assert a.total_s == pytest.approx(1.0, abs=0.02) and b.total_s == pytest.approx(1.0, abs=0.02)
    clock.now = 0.0
    seq = [measure(call(s), 1, warmup=0, min_time_s=1.0, min_runs=5, clock=clock) for s in (0.001, 0.004)]
    assert seq[1].p50 / seq[0].p50 == pytest.approx(4 / 3)  # what timing one after the other reported


def test_side_by_side_times_warm_calls_not_the_first_after_another_bundle():
    """A call right after another bundle's runs with caches that bundle flushed (here 3x slower), which a device
    running one model never sees: each block starts with an untimed call, so the medians are the warm times."""
    clock, last = FakeClock(), [None]

    def call(name, base_s):
        def one(i):
            clock.now += base_s * (3 if last[0] not in (None, name) else 1)
            last[0] = name
        return one

    small, large = measure_side_by_side([call("small", 0.001), call("large", 0.010)], 1, warmup=1, min_time_s=0.1,
                                        min_runs=5, clock=clock)
    assert (small.p99, small.runs, large.p99, large.runs) == pytest.approx((1.0, 100, 10.0, 10))


def test_side_by_side_a_failing_call_drops_out_and_the_others_are_timed():
    clock = FakeClock()

    def ok(i):
        clock.now += 0.002

    def crash(i):
        if i == 3:
            raise RuntimeError("crash at call 3")
        clock.now += 0.001

    fine, failed, at_warmup = measure_side_by_side([ok, crash, lambda i: 1 / 0], 1, warmup=2, min_time_s=0.1,
                                                   min_runs=5, clock=clock)
    assert fine.runs == 50 and fine.p50 == pytest.approx(2.0)
    assert isinstance(failed, RuntimeError) and isinstance(at_warmup, ZeroDivisionError)
