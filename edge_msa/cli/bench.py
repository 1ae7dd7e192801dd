"""`edge-msa bench`: latency / energy / accuracy of one or more bundles on this device, as a report."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  edge-msa bench bundles/student --out report/
  edge-msa bench bundles/teacher bundles/student --batch 1 8 --modalities all text text+audio --out report/
  edge-msa bench bundles/student --data ../shared/data/mosi/mosi_utterance_std.npz --threads 4 --out report/
  edge-msa bench bundles/student --long --energy-window 60 --out sustained/      # >= 600 s per row
  edge-msa bench bundles/student --precomputed-text --out report/     # time from text features, not raw strings
  edge-msa bench --compare laptop/report.json jetson/report.json pi/report.json --out compare/  # each / laptop

Rows are timed from the raw transcript ("input": "raw-text": tokenizer + text encoder + the rest) wherever the
data has transcripts; --precomputed-text times from text features ("input": "precomputed-text").
Each bundle's cold start is measured in fresh processes of its own (their median; cold_start_runs says how many),
before any timing:
cold_start_ms from the process's first line to ready (the runtime's imports, edge_msa.load and the text front end
it builds at the first text: tokenizer; a frozen encoder's MiniLM session), load_ms the same without the imports,
cold_start_rss_mb its peak RSS (what a process serving that bundle alone needs). Each row records the data
it scored and was timed on ("data": path, sha256; "split": name, n, ids_sha256), and --compare says where two
reports' accuracy came from other rows.
A row that fails (a bundle that will not load, a runtime error) says why in the report and the sweep goes on;
when every row fails, bench still writes the report and exits 2.

writes report/report.json (the data), report/report.md (tables, ratios vs the first bundle) and
report/report.png (accuracy vs p90 latency; where a row has accuracy and matplotlib is installed, else report.md
says why). Energy comes from a real meter (NVML, Jetson INA rails via
tegrastats, RAPL) or is reported as "unavailable: <why>": no meter, an --energy-window too short for the meter's
refresh (NVML's is watched when it opens), a counter that went backwards or a meter lost mid-run, active power not
above idle. An --energy-window longer than the meter's counter takes to wrap (RAPL) is refused before any timing.

--compare reads two or more reports and writes ratios of each later report B to the first, A (B/A): a table per
report in compare.md; compare.json holds the one comparison of two reports, else their list under "comparisons"
and the reports that match no row of A under "unmatched" (named in compare.md; exit 2 where no report matches).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from edge_msa.benchmarks.meters import ENERGY_WINDOW_S, IDLE_SETTLE_S, METERS

    from ..splits import SPLITS
    from . import DEFAULT_DATA, Typed, add_backend_flag, add_threads_flag, one_of

    p = subparsers.add_parser("bench", help="benchmark bundles: latency, energy, accuracy -> report",
                              description="Time bundles on this device (warm-up, p50/p90/p99, throughput, "
                              "cold start, peak memory), measure energy per inference with a real meter, and "
                              "put accuracy beside every row.", epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundles", nargs="*", metavar="BUNDLE", help="bundle directories from `edge-msa export`")
    p.add_argument("--data", help=f"dataset for accuracy (default: MOSI-U ({DEFAULT_DATA}) when the "
                   "bundle was trained on MOSI-U features)")
    p.add_argument("--split", default="test", **one_of(SPLITS), help="split for accuracy")
    p.add_argument("--out", help="report directory, replaced as a whole (default: report); with --compare, "
                   "where compare.md/.json go (default: print only)")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default: 1)")
    p.add_argument("--modalities", nargs="+", default=["all", "text"],
                   help="modality subsets: all, text, text+audio, ... (default: all text)")
    p.add_argument("--min-time", type=Typed, default=2.0, help="minimum timed seconds per row (default: 2)")
    p.add_argument("--min-runs", type=int, default=20, help="minimum timed calls per row (default: 20)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up calls per row (default: 10)")
    add_threads_flag(p)
    p.add_argument("--energy-window", type=Typed, default=ENERGY_WINDOW_S,
                   help=f"seconds of the idle and of each active energy window (default: {ENERGY_WINDOW_S:g})")
    p.add_argument("--idle-settle", type=Typed, default=IDLE_SETTLE_S,
                   help="seconds of sleep before the idle window, so the clocks drop from the timing's levels first "
                   f"(default: {IDLE_SETTLE_S:g})")
    p.add_argument("--meter", default="auto", **one_of(METERS),
                   help="energy meter (default: auto = a Jetson's INA rails: tegrastats, else the INA3221 sysfs files "
                   "(hwmon, or JetPack 4's ina3221x IIO); "
                   "elsewhere NVML for GPU work, RAPL for CPU work; none on a Raspberry Pi)")
    p.add_argument("--precomputed-text", action="store_true",
                   help="time from precomputed text features instead of the raw transcript (default: raw text)")
    p.add_argument("--long", action="store_true", help="sustained run: at least 600 s of timed calls per row")
    add_backend_flag(p)
    p.add_argument("--compare", nargs="+", metavar="REPORT.json",
                   help="print ratios of two or more reports, each later one B against the first A: B/A")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edge_msa.errors import InputError

    if args.compare:
        return _compare(args)
    if not args.bundles:
        raise InputError("no bundle given; expected `edge-msa bench BUNDLE [BUNDLE ...]` or "
                         "--compare A.json B.json [C.json ...]")
    from edge_msa.benchmarks import run_bench
    from edge_msa.errors import named_as_flags

    knobs = ["backend", "threads", "min_time", "min_runs", "warmup", "energy_window", "idle_settle"]
    with named_as_flags(knobs, spelled={"batches": "--batch"}):  # `--warmup -1` as typed, `warmup = -1` in Python
        out = run_bench(args.bundles, data=args.data, out=args.out or "report", batches=args.batch,
                        modalities=args.modalities, backend=args.backend, split=args.split, min_time=args.min_time,
                        min_runs=args.min_runs, warmup=args.warmup, threads=args.threads,
                        energy_window=args.energy_window, idle_settle=args.idle_settle, meter=args.meter,
                        long=args.long, progress=not args.quiet, precomputed_text=args.precomputed_text)
    _fail_if_nothing_measured(out)
    if not args.quiet:
        from edge_msa.benchmarks.report import FILES

        data, md, png = (out / name for name in FILES)
        print(f"wrote {data}, {md}" + (f", {png}" if png.exists() else ""))
        if not png.exists():
            from edge_msa.benchmarks import load_report
            from edge_msa.benchmarks.report import png_skipped

            print(png_skipped(load_report(data)) or "No report.png.")
    return 0


def _fail_if_nothing_measured(out: Path) -> None:
    """A sweep where every row failed (say, a mistyped bundle path) measured nothing: exit 2 like any bad input,
    though the report of the failures stays, so a script cannot mistake it for a benchmark."""
    from edge_msa.benchmarks import load_report
    from edge_msa.benchmarks.report import FILES
    from edge_msa.errors import InputError

    rows = load_report(out / FILES[0])["rows"]
    if rows and not any(row.get("status") == "ok" for row in rows):
        raise InputError(f"every row failed, so nothing was measured (first: {rows[0]['status']}); "
                         f"the failures are in {out / FILES[1]}")


def _compare(args: argparse.Namespace) -> int:
    from edge_msa.benchmarks import comparisons, load_report, render_comparison
    from edge_msa.atomic import write_text
    from edge_msa.errors import InputError
    from edge_msa.jsonio import dumps

    if args.bundles:  # argparse takes `bench bundle/ --compare a.json b.json` quietly; nothing would time it
        raise InputError(f"--compare reads reports and times nothing; got bundles too ({' '.join(args.bundles)}); "
                         "expected `edge-msa bench --compare A.json B.json [C.json ...]` alone")
    _check_not_folders(args.compare)
    _check_distinct(args.compare)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():  # found only after the table printed
        raise InputError(f"--out '{args.out}' is a file; expected a folder for compare.md and compare.json")
    cmp = comparisons([load_report(path) for path in args.compare], args.compare)
    text = render_comparison(cmp)
    sys.stdout.write(text)
    if args.out:
        write_text(Path(args.out) / "compare.md", text)
        write_text(Path(args.out) / "compare.json", dumps(cmp, indent=2) + "\n")
    return 0


def _check_not_folders(paths: list[str]) -> None:
    """A bundle or a report folder where a report.json goes: `bench --compare a.json b.json bundle/` read as a
    report said only "Is a directory", not that --compare times nothing, nor which file in a report folder it wants."""
    from edge_msa.benchmarks.report import FILES
    from edge_msa.errors import InputError
    from edge_msa.runtime.manifest import MANIFEST

    for path in paths:
        if (Path(path) / MANIFEST).is_file():
            raise InputError(f"--compare reads reports and times nothing; '{path}' is a bundle; expected {FILES[0]} "
                             "files (bench the bundles first, then compare their reports)")
        if (report := Path(path) / FILES[0]).is_file():
            raise InputError(f"--compare reads report files; '{path}' is a report folder; expected '{report}'")


def _check_distinct(paths: list[str]) -> None:
    """A report against itself gives ratios of 1 that read as a measurement (a path typed twice by mistake, say
    under two spellings)."""
    from edge_msa.errors import InputError

    resolved = [Path(path).resolve() for path in paths]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise InputError(f"--compare got the same report twice ({paths[resolved.index(path)]} and {paths[i]}); "
                             "expected different reports")
