"""The sweep: bundles x modality subsets x batch sizes -> one row each -> report.json/.md/.png.

Every bundle's cold start is measured first, in fresh processes of its own (`coldstart`); then every bundle is
loaded here (and its accuracy measured) and stays loaded; then, per subset and batch size, the bundles are timed
in alternating blocks (`measure_side_by_side`), so their ratios are measured side by side.

Every row carries a status; a row that fails (bad bundle, runtime error, meter error) says
`failed: <reason>` and the sweep goes on, so one broken bundle never costs the other measurements.
"""
from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_msa.data.base import DatasetSplits, FeatureSet
from edge_msa.data.modality_subset import restrict_set
from edge_msa.atomic import check_replaceable
from edge_msa.errors import EdgeMSAError, InputError, check_range, checked_threads
from edge_msa.metrics import METRIC_KEYS
from edge_msa.spec import SKIPPABLE

from .coldstart import ColdStart, close, failure_text, measure_cold_start
from .inputs import batches as make_batches
from .inputs import parse_subset, subset_name, synthetic_set
from .memory import peak_rss_mb, reset_peak
from .meters import (ENERGY_WINDOW_S, IDLE_DRIFT_WARN, IDLE_SETTLE_S, Meter, MeterUnavailable, Window, active_window,
                     energy_per_item, open_meter, settled_idle_window, window_too_long)
from .meters.nvml import gpu_memory_mb
from .report import REPLACES, write_report
from .sysinfo import SYSFS_ROOT, Clocks, row_clocks, system_info
from .target import Loader, Target, load_target
from .timing import CV_WARN, STAGE_BUDGET_S, STAGE_CALLS, LatencyStats, measure_side_by_side

LONG_MIN_TIME_S = 600.0  # --long: a sustained figure (thermal throttling shows up after minutes)
SYNTHETIC_N = 64


def run_bench(bundles: Sequence[str | os.PathLike], data: str | os.PathLike | DatasetSplits | None = None,
              out: str | os.PathLike = "report/", batches: Sequence[int] = (1,),
              modalities: Sequence[str] = ("all", "text"), *, backend: str | None = None, split: str = "test",
              min_time: float = 2.0, min_runs: int = 20, warmup: int = 10, threads: int | None = None,
              energy_window: float = ENERGY_WINDOW_S, idle_settle: float = IDLE_SETTLE_S, meter: str | Meter = "auto",
              long: bool = False, progress: bool = True, loader: Loader | None = None, argv: list[str] | None = None,
              precomputed_text: bool = False, sysfs_root: str | os.PathLike = SYSFS_ROOT,
              cold_start: ColdStart | None = None) -> Path:
    """Benchmark every bundle and write `out/report.{json,md,png}`; returns the report directory.

    `data`: a dataset path (any format `load_dataset` reads) or DatasetSplits for accuracy on `split`;
    None uses the MOSI-U default where the bundle's FeatureSpec is MOSI-U's, else accuracy is
    "unavailable: no --data". `backend`: None = the runtime each bundle was exported for.
    `meter`: one of METERS ("auto", "nvml", "tegrastats", "ina3221", "rapl", "none") or a Meter instance;
    `idle_settle`: seconds of sleep before the idle window, so the clocks drop from the timing's levels first.
    `loader(bundle, backend, threads) -> predictor` replaces `edge_msa.runtime.load`; `sysfs_root`, the / of /sys.
    Each bundle's cold start is measured first, before this process loads any bundle, in fresh processes of its own
    (`measure_cold_start`); `cold_start(bundle, backend, threads) -> figures` replaces that measurement.
    Timing starts from the raw transcript (tokenizer and text encoder included; rows say "input": "raw-text")
    wherever the data has transcripts; `precomputed_text` times from text features instead ("precomputed-text").
    """
    if not bundles:
        raise InputError("no bundle given; expected one or more bundle directories from `edge-msa export`")
    _check_settings(batches, energy_window, idle_settle, min_time, min_runs, warmup)
    threads = checked_threads(threads)  # 0 and None alike: the report and --compare record one "default"
    for what, values, key in (("bundle", bundles, lambda b: Path(b).resolve()), ("batch size", batches, int),
                              ("modality subset", modalities, parse_subset)):
        _given_once(what, list(values), key)
    subsets = {subset_name(s): s for s in map(parse_subset, modalities)}  # one key per subset, so --compare matches
    check_replaceable(out, *REPLACES)  # before any timing, not after it
    min_time = max(min_time, LONG_MIN_TIME_S) if long else min_time
    settings = {"backend": backend, "split": split, "batches": [int(b) for b in batches],
                "modalities": list(subsets), "min_time_s": min_time, "min_runs": min_runs, "warmup": warmup,
                "threads": threads, "energy_window_s": energy_window, "idle_settle_s": idle_settle, "long": long,
                "meter": meter if isinstance(meter, str) else meter.name,
                "input": "precomputed-text" if precomputed_text else "raw-text"}
    datasets = _Datasets(data, split, progress)
    energy = _Energy(meter, energy_window, idle_settle, (clocks := Clocks(sysfs_root)).family)  # clocks: at start
    bar = _Progress(len(bundles) * len(subsets) * len(batches), progress)
    rows: list[list[dict[str, Any]]] = []  # per bundle, in the order given
    loaded: dict[int, _Loaded] = {}  # position in `bundles` -> the bundles that loaded, kept loaded to the end
    colds = [_cold_start(Path(bundle), settings, cold_start or measure_cold_start, bar) for bundle in bundles]
    try:
        for bundle, cold in zip(bundles, colds):
            got = _load_bundle(Path(bundle), cold, subsets, settings, datasets, bar, loader)
            if isinstance(got, _Loaded):
                loaded[len(rows)] = got
            rows.append([] if isinstance(got, _Loaded) else got)
        _time_loaded(loaded, rows, subsets, settings, energy, clocks, bar)
    finally:
        for one in loaded.values():
            close(one.target.predictor)
        bar.close()
    flat = list(itertools.chain.from_iterable(rows))
    report = {"schema": 1, "system": system_info(clocks, argv, flat), "settings": settings, "rows": flat}
    return write_report(report, out)


def _time_loaded(loaded: dict[int, "_Loaded"], rows: list[list[dict[str, Any]]], subsets: dict[str, tuple[str, ...]],
                 settings: dict, energy: "_Energy", clocks: Clocks, bar: "_Progress") -> None:
    """Time the loaded bundles side by side per subset and batch size, each row appended to its bundle's `rows`
    (`loaded` maps a bundle's position to it), once the energy window is checked against each device kind's meter."""
    for on_gpu in sorted({one.target.on_gpu for one in loaded.values()}):
        energy.check_window(on_gpu)
    for name, keep in subsets.items():
        for b in settings["batches"]:
            bar.describe(f"{name} batch {b}")
            timed = _rows_side_by_side(list(loaded.values()), name, keep, b, settings, energy, clocks)
            for k, row in zip(loaded, timed):
                rows[k].append(row)
                bar.update(1)


def _check_settings(batches: Sequence[int], energy_window: float, idle_settle: float, min_time: float, min_runs: int,
                    warmup: int) -> None:
    """Bad numbers fail before any timing: an infinite --min-time, --energy-window or --idle-settle would never end,
    and a NaN one ended at once and went into report.json as NaN, which strict JSON readers refuse. Each is named as
    given (the bench CLI names its flags; `batches` is its --batch). The counts are whole numbers: from Python,
    batch 1.5 ran as batch 1."""
    if not batches:
        raise InputError("no batch size given; expected one or more batch sizes >= 1")
    for b in batches:
        check_range({"batches": b}, 1, strict=False, whole=True)
    check_range({"energy_window": energy_window}, 0, strict=True)
    check_range({"min_time": min_time, "idle_settle": idle_settle}, 0, strict=False)
    check_range({"warmup": warmup}, 0, strict=False, whole=True)
    check_range({"min_runs": min_runs}, 1, strict=False, whole=True)


def _given_once(what: str, given: list, key: Callable[[Any], Any]) -> None:
    """A bundle, batch size or modality subset given twice (b1 ./b1, text+audio audio+text) would time the same rows
    twice under one name, and a bundle beside itself leaves report.md's ratio table empty: refused up front."""
    keys = [key(g) for g in given]
    for i, k in enumerate(keys):
        if k in keys[:i]:
            raise InputError(f"{what} '{given[i]}' is given twice (also as '{given[keys.index(k)]}'); "
                             f"expected each {what} once")


@dataclass
class _Loaded:
    """A bundle loaded for the whole sweep (so every row is timed side by side with the other bundles'): what its
    rows share, what it is timed on, and its accuracy and skip rates per modality subset."""

    target: Target
    base: dict[str, Any]
    timing_set: FeatureSet
    accuracy: dict[str, tuple[dict | str, dict | None]]


def _cold_start(bundle: Path, settings: dict, measure: ColdStart, bar: "_Progress") -> dict[str, Any] | str:
    """A bundle's cold-start figures (`measure_cold_start`), or why they could not be measured."""
    bar.describe(f"{bundle.name} cold start")
    try:
        return measure(bundle, settings["backend"], settings["threads"])
    except Exception as exc:  # a load that fails there fails here too: the bundle's failed rows, saying why
        return f"load: {failure_text(exc)}"


def _load_bundle(bundle: Path, cold: dict[str, Any] | str, subsets: dict[str, tuple[str, ...]], settings: dict,
                 datasets: "_Datasets", bar: "_Progress", loader: Loader | None) -> "_Loaded | list[dict]":
    """Load a bundle and measure its accuracy per subset, its rows carrying its `cold` start figures; or its failed
    rows, saying why (`cold` is a text where its cold start failed)."""
    base: dict[str, Any] = {"bundle": str(bundle), "backend": settings["backend"] or "bundle default"}
    batch_sizes = settings["batches"]
    if isinstance(cold, str):
        return _failed_rows(base, subsets, batch_sizes, cold, bar)
    bar.describe(bundle.name)
    reset_peak()
    try:
        target = load_target(bundle, settings["backend"], settings["threads"], loader)
    except Exception as exc:  # any load failure becomes failed rows; the sweep continues
        return _failed_rows(base, subsets, batch_sizes, f"load: {failure_text(exc)}", bar)
    manifest = target.manifest
    base.update(backend=target.backend_name, model=manifest.get("model"), precision=target.precision,
                **bundle_bytes(bundle, manifest), **cold,
                # ONNX Runtime's intra-op default is one thread per physical core, which the standard library
                # cannot count portably (os.cpu_count() is logical CPUs: twice as many with SMT), so no number
                threads=settings["threads"] or "runtime default (ONNX Runtime: one per physical core)",
                providers=target.providers)
    eval_set, accuracy_note, scored = datasets.for_target(target)
    try:  # a token-id bundle's synthetic text is ids below its tokenizer's vocabulary size
        timing_set = eval_set if eval_set is not None else synthetic_set(target.spec, SYNTHETIC_N,
                                                                         vocab=target.text_vocab)
    except EdgeMSAError as exc:  # e.g. a token-id bundle without its tokenizer: nothing valid to time
        close(target.predictor)
        return _failed_rows(base, subsets, batch_sizes, f"synthetic inputs: {failure_text(exc)}", bar)
    base["inputs"] = f"{settings['split']} split" if eval_set is not None else "synthetic (random, full length)"
    base.update(scored)
    accuracy = {name: _accuracy(target, eval_set, keep) if eval_set is not None else (accuracy_note, None)
                for name, keep in subsets.items()}
    base["peak_rss_mb"] = peak_rss_mb()  # through its load and accuracy run, before the next bundle loads
    return _Loaded(target, base, timing_set, accuracy)


def _rows_side_by_side(loaded: list[_Loaded], name: str, keep: tuple[str, ...], batch: int, settings: dict,
                       energy: "_Energy", clocks: Clocks) -> list[dict]:
    """One row per loaded bundle for this subset and batch size, their latencies timed in alternating
    blocks (`measure_side_by_side`); then each bundle's per-stage ms and energy windows in turn. The clocks are read
    just before and just after the timed calls, outside them; the bundles timed side by side share both readings."""
    feeds: dict[int, list] = {}
    failed: dict[int, Exception] = {}
    for k, one in enumerate(loaded):
        try:
            feeds[k] = make_batches(one.timing_set, batch, keep, raw_text=settings["input"] == "raw-text")
        except Exception as exc:
            failed[k] = exc
    works = {k: _work(loaded[k].target, feed, batch) for k, feed in feeds.items()}
    start = clocks.snapshot()
    timed = dict(zip(works, measure_side_by_side(list(works.values()), batch, warmup=settings["warmup"],
                                                 min_time_s=settings["min_time_s"], min_runs=settings["min_runs"])))
    end = clocks.snapshot()
    rows = []
    for k, one in enumerate(loaded):
        row = {**one.base, "batch": batch, "modalities": name, **row_clocks(start, end, one.target.on_gpu)}
        try:
            result = failed.get(k) or timed[k]
            if isinstance(result, Exception):
                raise result
            row.update(_finish(one.target, feeds[k], works[k], result, settings, energy))
            row["status"] = "ok"
        except Exception as exc:  # a runtime or meter error fails this row only
            row["status"] = f"failed: {failure_text(exc)}"
        metrics, skip = one.accuracy[name]
        rows.append({**row, "metrics": metrics, "skip_rate": skip["audio_video"] if skip else None,
                     "skip_rates": skip})
    return rows


def _failed_rows(base: dict, subsets: dict, batch_sizes: list[int], why: str, bar: "_Progress") -> list[dict]:
    """Every row of a bundle that cannot be timed at all, each saying why; the sweep goes on to the next bundle."""
    bar.update(len(subsets) * len(batch_sizes))
    return [{**base, "batch": b, "modalities": name, "status": f"failed: {why}"}
            for name in subsets for b in batch_sizes]


def bundle_bytes(bundle: Path, manifest: dict) -> dict[str, int]:
    """Bytes on disk: the model's graphs (manifest `graphs`) and the whole bundle (text encoder,
    tokenizer and manifest included) — what a device has to store."""
    files = [p for p in bundle.iterdir() if p.is_file()]
    graphs = set(manifest.get("graphs", {}).values())
    return {"model_bytes": sum(p.stat().st_size for p in files if p.name in graphs),
            "bundle_bytes": sum(p.stat().st_size for p in files)}


def _work(target: Target, feed: list, batch: int) -> Callable[[int], int]:
    """One call on the i-th batch of `feed` (cycled): timed by measure_side_by_side, repeated over the energy
    window; returns the items it processed."""
    def work(i: int) -> int:
        target.run_once(feed[i % len(feed)])
        return batch

    return work


def _finish(target: Target, feed: list, work: Callable[[int], int], stats: LatencyStats, settings: dict,
            energy: "_Energy") -> dict[str, Any]:
    """A timed row's figures: latency and throughput, per-stage ms, energy per item, GPU memory, warnings."""
    result: dict[str, Any] = {"input": "raw-text" if feed[0].texts is not None else "precomputed-text",
                              "latency_ms": stats.latency_ms(), "throughput": stats.throughput, "cv": stats.cv,
                              "runs": stats.runs, "warmup": stats.warmup, **_stages(target, feed)}
    warnings = []
    if stats.cv > CV_WARN:
        warnings.append(f"noisy: CV {stats.cv:.0%} > {CV_WARN:.0%} (background load, throttling or too few "
                        "runs); rerun with a longer --min-time")
    result.update(energy.measure(target.on_gpu, work))
    if isinstance(result.get("active_w"), float) and result["active_w"] - result["idle_w"] < 0.02 * result["idle_w"]:
        warnings.append("energy above idle is within 2% of idle power: the per-item figure is at the meter's "
                        "noise floor; use a longer --energy-window or a larger batch")
    if abs(result.get("idle_drift", 0.0)) > IDLE_DRIFT_WARN:
        warnings.append(f"idle power changed {result['idle_drift']:+.0%} from the first half of its window to the "
                        "second: it had not settled, so the energy above it is off; use a longer --idle-settle")
    result["gpu_mem_mb"] = gpu_memory_mb() if target.on_gpu else "unavailable: model runs on the CPU"
    result["warnings"] = warnings
    return result


def _stages(target: Target, feed: list) -> dict[str, Any]:
    """Per-stage ms per call from extra `predict_batch` calls (the runtime times each graph), in a fixed shuffled
    order of the timed batches: STAGE_CALLS, then more until each batch ran once or STAGE_BUDGET_S passed. The first
    10 batches alone once gave every row's stages_ran, in 10 % steps, whatever the rest of the inputs did.

    The gate skips audio / video encoders for some inputs, so a stage's figure is its median ms over the calls it ran
    in times the share of calls it ran in (stages_ran), and total is their sum: one call stalled by background load
    moves no figure (a mean over 10 calls took it in whole), and the stages still add up to total. The median alone,
    read as a per-call cost, overstated an encoder the gate mostly skips (MOSI-U student, batch 1: audio ran in 1 of
    10 calls, video in 6). total covers the stages the runtime times only, so it sat below the p50 unexplained;
    stages_untimed_ms is the rest of the same calls (their wall time less their stages, median per call: input
    checks, padding, the gate's bookkeeping, building the results). Not the p50 less total: the p50's calls ran
    side by side with other bundles (caches flushed), which would pass for untimed work."""
    per_call: list[dict[str, float]] = []
    untimed, deadline = [], time.perf_counter() + STAGE_BUDGET_S
    for i in itertools.cycle(np.random.default_rng(0).permutation(len(feed))):
        if len(per_call) >= STAGE_CALLS and (len(per_call) >= len(feed) or time.perf_counter() > deadline):
            break
        start = time.perf_counter()
        ms = target.stages_ms(feed[i])
        if ms is None:
            return {"stages_ms": None, "stages_ran": None}
        per_call.append({s: v for s, v in ms.items() if s != "total"})  # the runtime's total: recomputed below
        untimed.append((time.perf_counter() - start) * 1e3 - sum(per_call[-1].values()))
    stages = list(dict.fromkeys(s for ms in per_call for s in ms))
    ran = {s: sum(s in ms for ms in per_call) / len(per_call) for s in stages}
    figures = {s: ran[s] * float(np.median([ms[s] for ms in per_call if s in ms])) for s in stages}
    return {"stages_ms": {**figures, "total": sum(figures.values())}, "stages_ran": {**ran, "total": 1.0},
            "stages_untimed_ms": float(np.median(untimed)), "stages_calls": len(per_call)}


def _accuracy(target: Target, fs: FeatureSet, keep: tuple[str, ...]) -> tuple[dict | str, dict | None]:
    """METRIC_KEYS on the split under this subset, and how often the gate skipped present audio / video."""
    from edge_msa.runtime.evaluate import evaluate

    restricted = restrict_set(fs, keep)
    try:
        result = evaluate(target.predictor, restricted)
    except Exception as exc:  # reported beside the row; the timing may still work
        return f"unavailable: accuracy run failed ({failure_text(exc)})", None
    metrics = {k: result[k] for k in METRIC_KEYS}
    present = {m: int((restricted.lengths[m] > 0).sum()) for m in SKIPPABLE}
    skipped = sum(result[f"skip_rate_{m}"] * present[m] for m in SKIPPABLE if present[m])
    skip = {"audio_video": skipped / sum(present.values()) if sum(present.values()) else "missing",
            **{m: result[f"skip_rate_{m}"] for m in SKIPPABLE}}  # "missing" where no sample has m
    return metrics, skip


class _Datasets:
    """Loads each dataset once per (file, lineage, text front end); decides per bundle which split gives accuracy
    (or why none does). A bundle's split is rebuilt from its data lineage (same file, format and validation
    carve). Transcripts go through the bundle's own text front end where it carries one (the tokenizer of a model
    that encodes token ids itself, else the frozen text encoder: the same files give the same disk-cached features),
    so a device install needs no training-side weights package."""

    def __init__(self, data: str | os.PathLike | DatasetSplits | None, split: str, progress: bool) -> None:
        self.split, self.progress = split, progress
        self.cache: dict[tuple, DatasetSplits] = {}
        self.given = data if data is None or isinstance(data, DatasetSplits) else Path(data)
        if isinstance(self.given, DatasetSplits):
            self.given.split(split)  # unknown split names fail before any timing
        elif self.given is not None:
            from edge_msa.data.loader import detect_format, existing_dataset
            # so does a missing or unreadable file (it is read later, once per bundle's text encoder)
            detect_format(existing_dataset(self.given))

    def _load(self, path: Path | None, record: dict | None, front=None) -> DatasetSplits:
        key = (path, json.dumps(record, sort_keys=True), getattr(front, "name", None),
               getattr(front, "tokenizer_path", None))
        if key not in self.cache:
            from edge_msa.data.lineage import rebuild_splits
            # only the timed split's text is embedded (a frozen-encoder bundle on MOSEI's label.csv: minutes less)
            self.cache[key] = rebuild_splits(record, path, self.progress, text_encoder=front, featurize=(self.split,))
        return self.cache[key]

    def for_target(self, target: Target) -> tuple[FeatureSet | None, str, dict[str, Any]]:
        """The split that scores `target` (None, and why not), and the rows' record of it (`scored_on`)."""
        record = target.manifest.get("data")
        if self.given is None and not record:
            from edge_msa.data.mosi_u import AV_FRONT_ENDS
            if tuple(target.spec.front_ends[1:]) != AV_FRONT_ENDS:
                why = "unavailable: no --data (the bundle's features are not MOSI-U's)"
                return None, why, scored_on(None, self.split)
        try:  # the front end, loaded with the bundle (load_target): the data's transcripts go through it
            front = getattr(target.predictor, "dataset_text_front_end", None)  # None: the data's own text features
            splits = self.given if isinstance(self.given, DatasetSplits) else self._load(self.given, record, front)
            splits = splits.for_model(target.spec)
            return splits.split(self.split), "", scored_on(splits, self.split)
        except EdgeMSAError as exc:
            return None, f"unavailable: {exc}", scored_on(None, self.split)


def scored_on(splits: DatasetSplits | None, split: str) -> dict[str, Any]:
    """A row's record of the rows it scored and was timed on, as `edge-msa eval` writes it (`scored_record`; both
    None for synthetic inputs). Per row, not in the settings: each bundle's split is rebuilt from its own data
    lineage, so the bundles of one run can score different files."""
    if splits is None:
        return {"split": None, "data": None}
    from edge_msa.data.lineage import scored_record

    return scored_record(splits, split)


class _Energy:
    """One meter per device kind (CPU / GPU work), open only while it measures one row's windows: a meter that
    samples in the background (tegrastats, 50 lines a second) left open ran beside the latency timing of every row
    after the first but not the first's, so the first bundle (usually the teacher) was timed on a quieter machine.
    Idle power is measured once per device kind in this run (with the meter running, as in every active window),
    after `settle_s` of sleep (see settled_idle_window), with its drift kept for the rows' warnings. Before any
    timing, each device kind's meter is opened once more, to check the window against it (check_window). `family`:
    the board's (`Clocks.family`), which picks auto's meters (`open_meter`)."""

    def __init__(self, choice: str | Meter, window_s: float, settle_s: float, family: str | None) -> None:
        self.choice, self.window_s, self.settle_s, self.family = choice, window_s, settle_s, family
        self.unavailable: dict[bool, str] = {}  # a meter that would not open is not retried on every row
        self.idle: dict[bool, tuple[Window, float]] = {}

    def _open(self, on_gpu: bool) -> Meter | str:
        meter = self.choice if isinstance(self.choice, Meter) else self.unavailable.get(on_gpu) or open_meter(
            self.choice, on_gpu, self.family)
        if isinstance(meter, str):
            self.unavailable[on_gpu] = meter
        return meter

    def _release(self, meter: Meter) -> None:
        if meter is not self.choice:  # a caller's Meter instance stays the caller's to close
            meter.close()

    def check_window(self, on_gpu: bool) -> None:
        """Refuse a window longer than the meter that measures this device kind can take (a RAPL counter's wrap)
        before any timing: found at the window's end, it cost the settle, the idle window and the whole active
        window of the first row, and then failed every row's energy."""
        meter = self._open(on_gpu)
        if isinstance(meter, str):
            return
        try:
            if too_long := window_too_long(meter, self.window_s):
                raise InputError(f"--energy-window {self.window_s:g}: {too_long}; expected --energy-window of at "
                                 f"most {meter.max_window_s:.3g} s with the {meter.name} meter, or --meter none")
        finally:
            self._release(meter)

    def measure(self, on_gpu: bool, work: Callable[[int], int]) -> dict[str, Any]:
        meter = self._open(on_gpu)
        if isinstance(meter, str):
            return {"energy": meter}
        try:
            if on_gpu not in self.idle:
                self.idle[on_gpu] = settled_idle_window(meter, self.window_s, self.settle_s)
            idle, drift = self.idle[on_gpu]
            result = energy_per_item(active_window(meter, work, self.window_s), idle)
        except MeterUnavailable as exc:
            return {"energy": f"unavailable: {exc}"}
        finally:
            self._release(meter)
        result["idle_drift"] = drift
        result["energy_method"] = (f"{meter.describe()}; (active energy - idle power x active time) / items "
                                   f"over a {self.window_s:g} s window, idle power from a {self.window_s:g} s "
                                   f"sleep window in this run, begun after {self.settle_s:g} s of sleep to let the "
                                   "clocks drop from the timing's levels")
        return result


class _Progress:
    """tqdm when installed and wanted, else silent (the device may not have tqdm)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="row", desc="bench")
            except ImportError:
                pass

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
