"""report.json is the data; report.md and report.png are rendered from it (and can be re-rendered)."""
from __future__ import annotations

import importlib.util
import os
from collections import Counter
from pathlib import Path
from typing import Any

from edge_msa.atomic import atomic_dir
from edge_msa.errors import PLOT_FIX
from edge_msa.jsonio import dumps

from .memory import MB
from .sysinfo import THROTTLED_BELOW, gpu_named
from .target import ok_rows_on_gpu
from .timing import SIDE_BY_SIDE, STAGE_BUDGET_S, STAGE_CALLS

HEADLINE = "acc2_non0"  # the accuracy axis of the Pareto plot and the ratio table
FILES = ("report.json", "report.md", "report.png")
REPLACES = ("report.json", "bench report")  # what an --out folder must hold to be replaced
# What two rows must share for a ratio between them to mean anything (report.md's ratios, `bench --compare`): a row
# timed from the raw transcript against one timed from text features would credit the skipped tokenizer and text
# encoder as a speed-up.
SAME_WORK = ("batch", "modalities", "input")


def write_report(report: dict[str, Any], out: str | os.PathLike) -> Path:
    """Write report.json + report.md (+ report.png) into `out`, replacing it as a whole.

    Refuses to replace a non-empty folder that is not an earlier report, so `--out .` cannot wipe a checkout.
    """
    out = Path(out)
    with atomic_dir(out, *REPLACES) as tmp:
        png_note = render_png(report, tmp / "report.png")
        (tmp / "report.json").write_text(dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(render_markdown(report, png_note), encoding="utf-8")
    return out


def _num(value: Any, fmt: str = "{:.2f}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) and value is not None else "–"


def _names(rows: list[dict]) -> dict[str, str]:
    """Each bundle's name in the tables and the legend: its folder name, or the path as given where two bundles
    share one (runs/a/student against runs/b/student), so their rows can be told apart."""
    paths = list(dict.fromkeys(r["bundle"] for r in rows))
    short = [Path(p).name or p for p in paths]
    return {p: n if short.count(n) == 1 else p for p, n in zip(paths, short)}


def _ok(row: dict) -> bool:
    return row.get("status") == "ok"


def _metric(row: dict, key: str) -> float | None:
    metrics = row.get("metrics")
    return metrics.get(key) if isinstance(metrics, dict) else None


def _energy_cell(row: dict) -> str:
    if isinstance(row.get("energy_mj_per_item"), (int, float)):
        return _num(row["energy_mj_per_item"], "{:.3g}")
    return "n/a" if row.get("energy") else "–"


def render_markdown(report: dict[str, Any], png_note: str | None = None) -> str:
    """Tables for people: system, one line per row, ratios vs the first bundle, stages, methods, warnings."""
    system, rows, settings = report.get("system", {}), report.get("rows", []), report.get("settings", {})
    names = _names(rows)
    lines = ["# edge-msa benchmark", "",
             _device_line(system),
             f"- cpu: {system.get('cpu')} x{system.get('cpu_count')}" + (
                 f"; gpu: {system.get('gpu')}" if _gpu_named(system) or _nvml_matters(system, rows) else ""),
             f"- os: {system.get('os')}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in system.get("versions", {}).items()),
             f"- command: `{system.get('command')}`",
             "- settings: " + ", ".join(f"{k}={'bundle default' if v is None and k == 'backend' else v}"
                                        for k, v in settings.items()), *_data_lines(rows, names), "",
             "Latency is per call (a batch), p90 is the headline (MLPerf SingleStream style); throughput in "
             "items/s; energy in mJ per item above idle; model KB = the model's graph files, bundle MB = "
             "everything the device stores (text encoder and tokenizer included); the cold start a device pays "
             "before its first text prediction is measured in a fresh process per bundle, before any timing (the "
             "median of `cold_start_runs` processes): cold start ms = from the process's first line to ready (the "
             "runtime's imports, `edge_msa.load` and the text front end it builds at the first text: tokenizer; a "
             "frozen encoder's MiniLM session), load ms = the same without the imports, cold start MB = that "
             "process's peak RSS, the memory a device serving that bundle alone needs; peak RSS MB = the benchmark "
             "process (harness, evaluation data and the bundles loaded before it included) from that bundle's load "
             "through its accuracy run; every MB is 10^6 bytes (the RSS figures too, converted from /proc's KiB). "
             "The bundles are "
             f"{SIDE_BY_SIDE}, so load that comes and goes falls on all of them alike and the ratios hold within the "
             "run.", "",
             "## Results", "",
             "| bundle | model | precision | model KB | bundle MB | batch | modalities | input | status | p50 ms | "
             "p90 ms | p99 ms | items/s | mJ/item | Acc-2 non0 | F1 non0 | MAE | skip rate | cold start ms | load ms | "
             "cold start MB | peak RSS MB | CV |",
             "|" + "---|" * 23]
    for r in rows:
        lines.append("| " + " | ".join([
            names[r["bundle"]], str(r.get("model", "–")), str(r.get("precision", "–")),
            _num(r["model_bytes"] / 1e3 if r.get("model_bytes") else None, "{:.0f}"),
            _num(r["bundle_bytes"] / MB if r.get("bundle_bytes") else None, "{:.1f}"), str(r["batch"]),
            r["modalities"], str(r.get("input", "–")),
            r["status"] + (", throttled?" if _ok(r) and r.get("throttled") else ""),
            *(_num(r.get("latency_ms", {}).get(k)) for k in ("p50", "p90", "p99")),
            _num(r.get("throughput"), "{:.1f}"), _energy_cell(r), _num(_metric(r, "acc2_non0"), "{:.3f}"),
            _num(_metric(r, "f1_non0"), "{:.3f}"), _num(_metric(r, "mae"), "{:.3f}"),
            _num(r.get("skip_rate"), "{:.0%}"),
            *(_num(r.get(k), "{:.0f}") for k in ("cold_start_ms", "load_ms", "cold_start_rss_mb", "peak_rss_mb")),
            _num(r.get("cv"), "{:.0%}")]) + " |")
    lines += (_ratio_section(rows, names) + _stage_section(rows, names) + _clocks_section(system, rows)
              + _notes_section(rows, names))
    lines += ["", "## Accuracy vs p90 latency", "",
              png_note if png_note else "![accuracy vs p90 latency](report.png)", ""]
    return "\n".join(lines)


def _data_lines(rows: list[dict], names: dict[str, str]) -> list[str]:
    """One line per data record the rows scored and were timed on (their "data" and "split"), naming its bundles."""
    bundles: dict[str, dict[str, None]] = {}  # line -> its bundles' names, in order
    for r in rows:
        data, split = r.get("data"), r.get("split")
        if isinstance(data, dict) and isinstance(split, dict):
            sha = f"sha256 {data['sha256'][:12]}…" if data.get("sha256") else "in memory"
            line = (f"{data.get('path') or 'data'} ({sha}), {split.get('name')} split: {split.get('n')} rows "
                    f"(ids_sha256 {str(split.get('ids_sha256'))[:12]}…)")
            bundles.setdefault(line, {})[names[r["bundle"]]] = None
    return [f"- data ({', '.join(b)}): {line}" for line, b in bundles.items()]


def _device_line(system: dict) -> str:
    """'- device: NVIDIA Jetson Orin Nano Developer Kit (board family: jetson, power mode: MAXN)': the family is what
    chose the advice (`jetson_clocks` or `cpupower`) and what NVML is not read on; a power mode only on a Jetson,
    the one board nvpmodel sets one on (or in a report that has one)."""
    family, mode = system.get("board_family"), system.get("power_mode")
    notes = ([f"board family: {family}"] if family else []) + (
        [f"power mode: {mode or 'unknown'}"] if mode or family == "jetson" else [])
    return f"- device: {system.get('device')}" + (f" ({', '.join(notes)})" if notes else "")


def _gpu_named(system: dict) -> bool:
    return gpu_named(str(system.get("gpu", "unavailable")))


def _nvml_matters(system: dict, rows: list[dict]) -> bool:
    """Whether report.md says why NVML (the gpu name, the NVML clocks line) was not read: one rule, off a detected
    board (a Jetson's or a Pi's GPU, if any, is not NVML-managed: `not_nvml`) and only where a row ran on the GPU or
    NVML names one, since only there is a GPU reading missing; on a CPU-only run the `[gpu]` extra's fix is noise."""
    return not system.get("board_family") and (ok_rows_on_gpu(rows) or _gpu_named(system))


def _ratio_section(rows: list[dict], names: dict[str, str]) -> list[str]:
    """Each bundle against the first one doing the same work (SAME_WORK: batch, modalities, input), e.g. teacher /
    student."""
    if not rows:
        return []
    first = rows[0]["bundle"]
    ref = {_same_work(r): r for r in rows if r["bundle"] == first and _ok(r)}
    out = []
    for r in rows:
        base = ref.get(_same_work(r))
        if r["bundle"] == first or base is None or not _ok(r):
            continue
        p90 = base["latency_ms"]["p90"] / r["latency_ms"]["p90"] if r["latency_ms"]["p90"] > 0 else None
        both_e = all(isinstance(x.get("energy_mj_per_item"), (int, float)) for x in (base, r))
        energy = base["energy_mj_per_item"] / r["energy_mj_per_item"] if both_e and r["energy_mj_per_item"] else None
        acc_r, acc_base = _metric(r, HEADLINE), _metric(base, HEADLINE)
        acc = acc_r - acc_base if acc_r is not None and acc_base is not None else None
        both_s = all(isinstance(x.get("model_bytes"), int) and x["model_bytes"] > 0 for x in (base, r))
        size = base["model_bytes"] / r["model_bytes"] if both_s else None
        out.append(f"| {names[r['bundle']]} | {r['batch']} | {r['modalities']} | {_num(p90, '{:.2f}x')} | "
                   f"{_num(size, '{:.2f}x')} | "
                   f"{_num(r['throughput'] / base['throughput'], '{:.2f}x')} | {_num(energy, '{:.2f}x')} | "
                   f"{_num(acc, '{:+.3f}')} |")
    if not out:
        return []
    return ["", f"## Ratios vs the first bundle ({names[first]})", "",
            "p90, model size and energy as first/this (> 1: this bundle is faster / smaller / cheaper); throughput "
            "as this/first; only rows with the same input as the first bundle's are compared.", "",
            "| bundle | batch | modalities | p90 speed-up | model size | throughput | energy saving | Δ Acc-2 non0 |",
            "|---|---|---|---|---|---|---|---|", *out]


def _same_work(row: dict) -> tuple:
    return tuple(row.get(f) for f in SAME_WORK)


def _stage_section(rows: list[dict], names: dict[str, str]) -> list[str]:
    """Each stage's ms per call (stages_ms), and for one that did not run in every call (an encoder the gate skips for
    some inputs) how often it ran (stages_ran) and its ms in the calls it ran in (ms per call / ran): what it costs on
    these inputs and what it costs when it runs, both from the two fields report.json holds. Then the untimed rest
    of those calls (stages_untimed_ms), since total alone, below the p50, read as the whole call."""
    staged = [r for r in rows if _ok(r) and r.get("stages_ms")]
    if not staged:
        return []
    out = ["", "## Per-stage ms per call", "",
           "Each stage's figure is its median ms over the extra calls it ran in (one per timed batch in a shuffled "
           f"order, at least {STAGE_CALLS} and about {STAGE_BUDGET_S:g} s of them) times the share of calls it ran in, "
           "so one slow call moves no figure and the stages add up to total. total covers only the stages the "
           "runtime times (graphs, tokenizer, media front ends), so it is below the p50; untimed is the rest of the "
           "same calls (their wall time less their stages, median per call: input checks, padding, the gate's "
           "bookkeeping, building the results). These calls ran alone, the p50's side by side with the other "
           "bundles, so total + untimed is close to the p50 but not it.", "",
           "| bundle | batch | modalities | stages |", "|---|---|---|---|"]
    for r in staged:
        stages = ", ".join(_stage_cell(k, v, r["stages_ran"][k]) for k, v in r["stages_ms"].items())
        untimed = f", untimed {r['stages_untimed_ms']:.2f}" if "stages_untimed_ms" in r else ""
        out.append(f"| {names[r['bundle']]} | {r['batch']} | {r['modalities']} | {stages}{untimed} |")
    return out


def _stage_cell(stage: str, ms: float, ran: float) -> str:
    note = "" if ran == 1 else f" (ran in {ran:.0%} of calls, {ms / ran:.2f} when it ran)"
    return f"{stage} {ms:.2f}{note}"


def _clocks_section(system: dict, rows: list[dict]) -> list[str]:
    """The governors, max clocks and thermal zones once (or why sysfs had none), the advice where the governor lets
    the clocks vary, and each timed batch's clocks and hottest zone before and after its timed calls."""
    if "cpufreq" not in system:  # a report written before clocks were recorded
        return []
    zones = system["thermal"]
    out = ["", "## Clocks and temperature", "", f"- CPU clocks: {_cpus_line(system['cpufreq'])}",
           *_gpu_clock_lines(system, rows),
           "- thermal zones: " + (zones if isinstance(zones, str) else ", ".join(
               z["type"] + (f" (passive trip {z['passive_trip_c']:g} °C)" if z["passive_trip_c"] is not None else "")
               for z in zones.values()))]
    out += _firmware_lines(system)
    out += [f"- advice: {system[key]}" for key in ("clock_advice", "firmware_advice") if system.get(key)]
    timed = {(r["batch"], r["modalities"]): r for r in rows if "clocks" in r}
    if not timed:
        return out
    out += ["", f"throttled? marks a row whose timed calls ended with {_throttled_rule(system)}. The bundles of one "
            "batch size and subset are timed side by side, so they share one reading just before and one just after "
            f"their timed calls; clocks are the slowest / fastest CPU{_gpu_too(system)} as a share of its max.", "",
            "| batch | modalities | clocks start | clocks end | hottest start | hottest end | throttled? |",
            "|---|---|---|---|---|---|---|"]
    for (batch, subset), r in timed.items():
        start, end = r["clocks"]["start"], r["clocks"]["end"]
        out.append(f"| {batch} | {subset} | {_clock_cell(start)} | {_clock_cell(end)} | {_heat_cell(start)} | "
                   f"{_heat_cell(end)} | {'yes: ' + r['throttled_why'] if r['throttled'] else 'no'} |")
    return out


def _throttled_rule(system: dict) -> str:
    """What flags a row (`sysinfo.throttled`), naming only what this run read: a Jetson GPU's clock, NVML's reasons
    and a Pi firmware's bits each where the `system` block has them, so a Pi's report does not explain NVML."""
    gpu = " (or, on a GPU backend, the GPU)" if isinstance(system.get("gpu_clock"), dict) else ""
    why = [f"even the fastest CPU{gpu} below {THROTTLED_BELOW:.0%} of its max clock"] + (
        ["NVML reporting a GPU backend's clocks held down by a power cap, heat or a hardware slowdown"]
        if isinstance(system.get("nvml_clocks"), dict) else []) + [
        "a thermal zone at or over its first passive trip point"] + (
        ["a Raspberry Pi's firmware throttling now"] if "firmware_throttled" in system else [])
    return ", ".join(why[:-1]) + " or " + why[-1]


def _gpu_too(system: dict) -> str:
    read = any(isinstance(system.get(key), dict) for key in ("gpu_clock", "nvml_clocks"))
    return " (and the GPU)" if read else ""


def _firmware_lines(system: dict) -> list[str]:
    """A Raspberry Pi firmware's throttle bits where vcgencmd answered; on a detected Pi where it did not, that they
    are missing: the firmware caps the clocks without sysfs showing it reliably, so a "no" under throttled? there
    would read as checked when it was not."""
    if "firmware_throttled" in system:
        firmware = system["firmware_throttled"]
        return [f"- Raspberry Pi firmware (vcgencmd get_throttled as the run ended): {firmware['raw']}; since boot: "
                f"{', '.join(firmware['since_boot']) or 'nothing'}"]
    if system.get("board_family") == "raspberry-pi":
        return ["- Raspberry Pi firmware: not read (`vcgencmd get_throttled` did not answer: not on PATH, or the user "
                "is not in the `video` group), so throttled? cannot show the firmware capping the clocks "
                "(under-voltage, its soft temperature limit)"]
    return []


def _gpu_clock_lines(system: dict, rows: list[dict]) -> list[str]:
    """A Jetson GPU's devfreq clock where it was read or the board is a Jetson, and NVML's where it was read or its
    absence matters (`_nvml_matters`): "no Jetson GPU" on a desktop, or "install the [gpu] extra" on a Pi or a
    CPU-only run, is a line about hardware the run never had."""
    gpu, nvml = system.get("gpu_clock"), system.get("nvml_clocks")
    return ([f"- GPU clock: {_gpu_line(gpu)}"] if isinstance(gpu, dict) or gpu and system.get(
        "board_family") == "jetson" else []) + ([f"- NVIDIA GPU clocks (NVML): {_nvml_line(nvml)}"] if isinstance(
            nvml, dict) or nvml and _nvml_matters(system, rows) else [])


def _cpus_line(cpus: dict | str) -> str:
    """'schedutil, max 1510 MHz: 6 CPUs' per governor and max clock (', pinned' where the min is raised to it)."""
    if isinstance(cpus, str):
        return cpus
    groups = Counter((c["governor"], c["max_khz"], c["pinned"]) for c in cpus.values())
    return "; ".join(f"{gov}{', pinned' if pinned else ''}, max {khz / 1e3:.0f} MHz: {n} CPU{'s' * (n > 1)}"
                     for (gov, khz, pinned), n in groups.items())


def _gpu_line(gpu: dict | str) -> str:
    """'nvhost_podgov, max 625 MHz (17000000.ga10b)' (', pinned' where the min is raised to the max)."""
    if isinstance(gpu, str):
        return gpu
    pinned = ", pinned" if gpu["pinned"] else ""
    return f"{gpu['governor']}{pinned}, max {gpu['max_hz'] / 1e6:.0f} MHz ({gpu['device']})"


def _nvml_line(nvml: dict | str) -> str:
    """'max SM 1980 MHz (NVIDIA H100 80GB HBM3)', or why NVML was not read."""
    return nvml if isinstance(nvml, str) else f"max SM {nvml['max_sm_mhz']} MHz ({nvml['device']})"


def _clock_cell(snap: dict) -> str:
    cpu = f"{snap['cpu_freq_min']:.0%} / {snap['cpu_freq_max']:.0%}" if "cpu_freq_max" in snap else "–"
    reasons = f" ({', '.join(snap['gpu_reasons'])})" if snap.get("gpu_reasons") else ""
    return cpu + (f", GPU {snap['gpu_freq']:.0%}" if "gpu_freq" in snap else "") + (
        f", GPU SM {snap['gpu_sm_clock']:.0%}{reasons}" if "gpu_sm_clock" in snap else "") + (
        f", firmware {snap['firmware_throttled']}" if "firmware_throttled" in snap else "")


def _heat_cell(snap: dict) -> str:
    return f"{snap['hottest_c']:.1f} °C ({snap['hottest_zone']})" if "hottest_c" in snap else "–"


def _notes_section(rows: list[dict], names: dict[str, str]) -> list[str]:
    methods = sorted({r["energy_method"] for r in rows if r.get("energy_method")})
    missing = sorted({r["energy"] for r in rows if isinstance(r.get("energy"), str)})
    accuracy = sorted({r["metrics"] for r in rows if isinstance(r.get("metrics"), str)})
    warnings = [f"{names[r['bundle']]} batch {r['batch']} {r['modalities']}: {w}"
                for r in rows for w in r.get("warnings", [])]
    out = ["", "## Energy method", ""] + [f"- {m}" for m in methods] + [f"- energy {m}" for m in missing]
    if accuracy:
        out += ["", "## Accuracy notes", ""] + [f"- accuracy {a}" for a in accuracy]
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(latency, accuracy) points no other point beats on both (lower latency, higher accuracy)."""
    front, best = [], float("-inf")
    for lat, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((lat, acc))
            best = acc
    return front


def _plotted_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report.get("rows", []) if _ok(r) and _metric(r, HEADLINE) is not None]


def png_skipped(report: dict[str, Any]) -> str | None:
    """Why no report.png is drawn for this report (no row with accuracy; matplotlib, an extra, absent), or None."""
    if not _plotted_rows(report):
        return "No report.png: no successful row has accuracy (pass --data to measure it)."
    if importlib.util.find_spec("matplotlib") is None:
        return f"No report.png: matplotlib is not installed ({PLOT_FIX} to get the plot)."
    return None


def render_png(report: dict[str, Any], path: Path) -> str | None:
    """Accuracy vs p90 latency with the Pareto front; returns a note instead when no PNG is drawn.

    Points are named in a legend beside the axes, not by text next to them: bundles measured close together
    would otherwise draw their labels on top of each other."""
    note = png_skipped(report)
    if note:
        return note
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = _plotted_rows(report)
    smallest = min(r["batch"] for r in rows)
    rows = [r for r in rows if r["batch"] == smallest]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    front = pareto_front(_scatter_rows(ax, rows, matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]))
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="grey", linestyle="--",
            label="Pareto front")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide on a log axis
    ax.margins(x=0.25, y=0.1)
    ax.set_xlabel(f"p90 latency per call, ms (batch {smallest}, log scale)")
    ax.set_ylabel("Acc-2 (non-0)")
    ax.set_title("accuracy vs latency")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, borderaxespad=0.0,
              ncol=1 + len(rows) // 24)  # beside the axes, so it never hides a point
    fig.savefig(path, bbox_inches="tight")  # widened to hold the legend
    plt.close(fig)
    return None


def _scatter_rows(ax: Any, rows: list[dict[str, Any]], palette: list[str]) -> list[tuple[float, float]]:
    """One legend entry per row: colour = bundle, marker = modality subset, so points that sit on top of each
    other stay tellable apart. Returns the (p90 latency, accuracy) points."""
    bundles, names = list(dict.fromkeys(r["bundle"] for r in rows)), _names(rows)
    subsets = list(dict.fromkeys(r["modalities"] for r in rows))
    markers = "osD^v<>pP*Xh"
    points = []
    for r in rows:
        x, y = r["latency_ms"]["p90"], r["metrics"][HEADLINE]  # rows from _plotted_rows: each has its accuracy
        points.append((x, y))
        ax.scatter([x], [y], s=36, color=palette[bundles.index(r["bundle"]) % len(palette)], alpha=0.85,
                   marker=markers[subsets.index(r["modalities"]) % len(markers)],
                   label=f"{names[r['bundle']]} [{r['modalities']}] {r.get('precision', '')}".rstrip())
    return points
