"""`edge-msa bench --compare a.json b.json [c.json ...]`: ratios between reports (devices, builds), each later one
against the first."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edge_msa.errors import InputError, plural
from edge_msa.jsonio import loads

from .report import HEADLINE, SAME_WORK
from .sysinfo import varying_governors
from .target import ok_rows_on_gpu

KEY_FIELDS = ("bundle", "backend", "precision", *SAME_WORK)  # SAME_WORK alone is the fallback key
# Settings that change the figures besides the device: where the two reports differ, the comparison says so.
COMPARED_SETTINGS = ("threads", "backend", "split", "min_time_s", "warmup", "long", "energy_window_s", "idle_settle_s",
                     "meter")
# compare.md's reading of the ratios; {} is room for "each report B against the first" when there are several.
# The rows two reports must share for a ratio, which a pair matching nothing has none of.
MATCHED_ROWS = "successful rows with the same batch size, modalities and input (raw-text / precomputed-text)"
_RATIOS = "Ratios are B/A{}: latency < 1 and throughput > 1 mean B is faster; energy < 1 means B is cheaper."


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        report = loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read report '{path}' ({exc.strerror}); expected a report.json from edge-msa bench")
    except json.JSONDecodeError as exc:
        raise InputError(f"'{path}' is not JSON ({exc.msg}); expected a report.json from edge-msa bench") from None
    if not isinstance(report, dict) or not isinstance(report.get("rows"), list):
        raise InputError(f"'{path}' has no 'rows' list; expected a report.json from edge-msa bench")
    return report


def _key(row: dict, fields: tuple[str, ...]) -> tuple:
    return tuple(Path(row[f]).name if f == "bundle" else row.get(f) for f in fields)


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per row present and ok in both, matched by bundle name, backend, precision, batch, modalities and
    input; when the two reports share no bundle (teacher run vs student run) by batch, modalities and input.
    Ratios are b/a: latency < 1 and throughput > 1 mean b is faster; `same_scored_rows` says whether the Δ accuracy
    compares scores on the same rows of the same file (None: unknown, e.g. a report from before rows recorded it)."""
    ok_a = [r for r in a["rows"] if r.get("status") == "ok"]
    ok_b = [r for r in b["rows"] if r.get("status") == "ok"]
    fields: tuple[str, ...] = KEY_FIELDS
    if not {_key(r, fields) for r in ok_a} & {_key(r, fields) for r in ok_b}:
        fields = SAME_WORK
    first_a: dict[tuple, dict] = {}
    for r in ok_a:
        first_a.setdefault(_key(r, fields), r)
    out = []
    for rb in ok_b:
        ra = first_a.get(_key(rb, fields))
        if ra is None:
            continue
        entry = {"a": Path(ra["bundle"]).name, "b": Path(rb["bundle"]).name, "batch": rb["batch"],
                 "modalities": rb["modalities"]}
        for k in ("p50", "p90", "p99"):
            entry[f"{k}_ratio"] = _ratio(rb["latency_ms"][k], ra["latency_ms"][k])
        entry["throughput_ratio"] = _ratio(rb.get("throughput"), ra.get("throughput"))
        entry["energy_ratio"] = _ratio(rb.get("energy_mj_per_item"), ra.get("energy_mj_per_item"))
        acc_a, acc_b = (r.get("metrics", {}).get(HEADLINE) if isinstance(r.get("metrics"), dict) else None
                        for r in (ra, rb))
        entry[f"{HEADLINE}_delta"] = acc_b - acc_a if acc_a is not None and acc_b is not None else None
        entry["same_scored_rows"] = _same_scored_rows(ra, rb) if entry[f"{HEADLINE}_delta"] is not None else None
        out.append(entry)
    if not out:
        raise InputError(f"the two reports have no {MATCHED_ROWS}")
    return out


def _scored_rows(row: dict) -> tuple | None:
    """The data file (sha256) and split rows (ids_sha256) a row was scored on, or None where its report has no record
    of them (synthetic inputs, or a report written before bench recorded them)."""
    data, split = row.get("data"), row.get("split")
    if not (isinstance(data, dict) and isinstance(split, dict) and split.get("ids_sha256")):
        return None
    return data.get("sha256"), split["ids_sha256"]


def _same_scored_rows(a: dict, b: dict) -> bool | None:
    """Whether two rows' accuracy was scored on the same rows of the same file (None: unknown): a Δ accuracy
    between other data, another split or another carve measures the data as well as the models."""
    rows_a, rows_b = _scored_rows(a), _scored_rows(b)
    return None if rows_a is None or rows_b is None else rows_a == rows_b


def _ratio(b: Any, a: Any) -> float | None:
    ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0
    return float(b) / float(a) if ok else None


def differing_settings(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The COMPARED_SETTINGS the two reports ran with differently (say 1 thread vs 4), as {name: {"a": x, "b": y}}: a
    ratio between them measures those too, not only the two devices or builds."""
    sa, sb = a.get("settings") or {}, b.get("settings") or {}
    return {k: {"a": sa.get(k), "b": sb.get(k)} for k in COMPARED_SETTINGS if sa.get(k) != sb.get(k)}


def clock_warning(report: dict[str, Any]) -> str | None:
    """What in a report's clocks can move its side of the ratios: successful rows flagged throttled?, governors that
    let the clocks vary and a Raspberry Pi firmware's throttling since boot (it may have struck between the rows'
    readings), or None. A ratio between a throttled or unpinned board and a steady one measures the clocks as well
    as the devices. Reports written before the clocks were recorded have none of these fields: None."""
    ok = [r for r in report["rows"] if r.get("status") == "ok"]
    hot = sum(r.get("throttled") is True for r in ok)
    system = report.get("system") or {}
    governors = varying_governors(system.get("cpufreq", ""),  # the GPU's as in its clock_advice
                                  system.get("gpu_clock") if ok_rows_on_gpu(ok) else None)
    since_boot = (system.get("firmware_throttled") or {}).get("since_boot")
    why = ([f"{hot} of {len(ok)} successful rows flagged throttled?"] if hot else []) + (
        [f"governor {', '.join(governors)} (clocks not pinned)"] if governors else []) + (
        [f"firmware reported {', '.join(since_boot)} since boot"] if since_boot else [])
    return "; ".join(why) or None


def comparison(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str) -> dict[str, Any]:
    """compare.json: the ratio rows and the settings the two reports differ in, which compare.md renders (one source
    for both, so a script reading the JSON learns what the Markdown warns about)."""
    warnings = {side: why for side, report in (("a", a), ("b", b)) if (why := clock_warning(report))}
    return {"a": a_name, "b": b_name, "settings_differ": differing_settings(a, b), "clock_warnings": warnings,
            "rows": compare_reports(a, b)}


def comparisons(reports: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """compare.json for a baseline (the first report) and one or more later reports: each later report's
    `comparison` with the baseline, listed under "comparisons" in the two-report layout, so code that reads one pair
    reads each entry, and the later reports that match no row of the baseline under "unmatched" (one board's failed
    sweep stopped the comparison of every other board). Refused only when no later report matches, as two reports
    that match nothing are. Exactly two reports keep the one pair's layout at the top, as the scripts written for it
    read it."""
    if len(reports) < 2:  # nothing to divide by
        raise InputError(f"got {len(reports)} report to compare ({', '.join(names)}); expected two or more: the "
                         "baseline A first, then the reports B to compare with it")
    if len(reports) == 2:
        return comparison(reports[0], reports[1], names[0], names[1])
    pairs, unmatched = [], []
    for report, name in zip(reports[1:], names[1:]):
        try:
            pairs.append(comparison(reports[0], report, names[0], name))
        except InputError:  # compare_reports' one refusal: this pair matched no row
            unmatched.append(name)
    if not pairs:
        raise InputError(f"the first report {names[0]} and each later one ({', '.join(unmatched)}) have no "
                         f"{MATCHED_ROWS}")
    return {"a": names[0], "comparisons": pairs, "unmatched": unmatched}


def render_comparison(cmp: dict[str, Any]) -> str:
    """compare.md from `comparisons`' dict. Several later reports get a section each (the baseline's clock warning
    once, above them), not one table with a column group per report: Markdown has no header spanning columns, six
    ratios per report make a table too wide to read, and each pair matches its own rows (a board whose row failed,
    a teacher run matched by batch and modalities alone) under its own settings and clock warnings."""
    if "comparisons" not in cmp:
        return "\n".join([f"# edge-msa bench comparison: B = {cmp['b']} vs A = {cmp['a']}", "", _RATIOS.format(""),
                          "", *_pair_lines(cmp, ("a", "b"))]) + "\n"
    pairs = cmp["comparisons"]
    lines = [f"# edge-msa bench comparison: each of {plural(len(pairs), 'report')} B vs A = {cmp['a']}", "",
             _RATIOS.format(", each report B against the first, A"), "", *_clock_lines(pairs[0], ("a",)),
             *(line for name in cmp["unmatched"] for line in (f"Left out: {name} and A have no {MATCHED_ROWS}.", ""))]
    for pair in pairs:
        lines += [f"## B = {pair['b']}", "", *_pair_lines(pair, ("b",)), ""]
    return "\n".join(lines[:-1]) + "\n"


def _clock_lines(cmp: dict[str, Any], sides: tuple[str, ...]) -> list[str]:
    """The clock warnings of `sides` of one pair: with several pairs the baseline's is said once, not per pair."""
    return [line for side, why in cmp["clock_warnings"].items() if side in sides for line in (
        f"Clocks of {side.upper()} ({cmp[side]}): {why}; the ratios include their effect.", "")]


def _pair_lines(cmp: dict[str, Any], clock_sides: tuple[str, ...]) -> list[str]:
    """One pair's settings and clock warnings (of `clock_sides`) and its table of ratios."""
    def cell(v: Any, fmt: str) -> str:
        return fmt.format(v) if isinstance(v, (int, float)) else "–"

    differing = [f"{k} A {v['a']}, B {v['b']}" for k, v in cmp["settings_differ"].items()]
    other_rows = list(dict.fromkeys(f"{e['a']} / {e['b']}" for e in cmp["rows"] if e.get("same_scored_rows") is False))
    lines = [*([f"Settings differ (the ratios include their effect): {'; '.join(differing)}.", ""] if differing
               else []), *_clock_lines(cmp, clock_sides),
             *([f"Accuracy scored on other rows (data file or split) in A and B: {', '.join(other_rows)}; their "
                "Δ Acc-2 compares the data as well as the models.", ""] if other_rows else []),
             "| A bundle | B bundle | batch | modalities | p50 B/A | p90 B/A | p99 B/A | throughput B/A | "
             "energy B/A | Δ Acc-2 non0 |", "|" + "---|" * 10]
    for e in cmp["rows"]:
        lines.append(f"| {e['a']} | {e['b']} | {e['batch']} | {e['modalities']} | {cell(e['p50_ratio'], '{:.2f}')} "
                     f"| {cell(e['p90_ratio'], '{:.2f}')} | {cell(e['p99_ratio'], '{:.2f}')} | "
                     f"{cell(e['throughput_ratio'], '{:.2f}')} | {cell(e['energy_ratio'], '{:.2f}')} | "
                     f"{cell(e[f'{HEADLINE}_delta'], '{:+.3f}')} |")
    return lines
