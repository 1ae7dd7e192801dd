"""A bundle's cold start as a device pays it: in a fresh process of its own, which imports the runtime, loads the
bundle and builds its text front end (`open_bundle`), then reports its figures as one JSON line (`child`).

Measured inside the benchmark process, the figures depended on the order of the bundles: the first paid ONNX
Runtime's first session (its code paged in, its thread pools) and later ones reused memory that earlier loads had
freed (three copies of one bundle: the first 400-440 ms / 195 MB, the others ~280 ms / 96-122 MB). A device starts
a fresh process; so does this measurement. The child's imports are timed, so the module's top imports nothing a
device process would not: the parent's subprocess and statistics (26-50 ms with decimal, threading) are imported in
the functions that use them."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import edge_msa
from edge_msa.errors import EdgeMSAError, one_line

from .memory import own_peak_rss_mb

RUNS = 3  # fresh processes per bundle, their median reported: about a second each for a small bundle
TIMEOUT_S = 300.0  # per process: a frozen encoder's MiniLM session on a slow board takes seconds, not minutes
FIGURES = ("cold_start_ms", "load_ms", "cold_start_rss_mb")
# The child's first line starts its clock; everything after it is charged: imports, load, text front end.
# `python -c` puts the working directory first on the path (''), which `edge-msa bench` has not: a checkout's
# edge_msa/ source folder (no benchmarks/ in it) shadowed an installed package, a json.py there the standard
# library's. The child drops it and puts the parent's edge_msa first (its folder, the first argument).
CHILD = ("import sys, time; started = time.perf_counter()\n"
         "if sys.path[:1] == ['']: del sys.path[0]\n"
         "sys.path.insert(0, sys.argv.pop(1))\n"
         "from edge_msa.benchmarks.coldstart import child; child(started)\n")


class ColdStartFailed(EdgeMSAError):
    """A fresh process that could not open its bundle, or ran past its time: its one line goes into the rows."""


ColdStart = Callable[[Path, "str | None", "int | None"], dict[str, Any]]


def runtime_loader(bundle: Path, backend: str | None, threads: int | None) -> Any:
    """The device runtime (numpy + onnxruntime); backend None = the one the bundle was exported for."""
    from edge_msa.runtime import load

    return load(bundle, backend=backend, threads=threads)


def open_bundle(bundle: Path, backend: str | None, threads: int | None, loader: Callable | None = None) -> Any:
    """Load a bundle and build its text front end (the tokenizer; a frozen encoder's MiniLM session), which the
    runtime builds at the first text: what a device pays before its first text prediction. One that fails is
    closed. The benchmark process opens its bundles with it, and `child` times it."""
    predictor = (loader or runtime_loader)(bundle, backend, threads)
    try:
        front_end = getattr(predictor, "dataset_text_front_end", None)  # None: the bundle takes text features
        if front_end is not None:
            front_end.load()
    except BaseException:
        close(predictor)
        raise
    return predictor


def close(predictor: Any) -> None:
    """Release a predictor's sessions, where it has any to release (fakes in tests may not)."""
    release = getattr(predictor, "close", None)
    if callable(release):
        release()


def measure_cold_start(bundle: Path, backend: str | None, threads: int | None, runs: int = RUNS,
                       timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """The median of each of FIGURES over `runs` fresh processes, one after another, and how many ran
    (cold_start_runs). Raises ColdStartFailed with one line where a process fails or runs past `timeout_s`."""
    import statistics

    results = [_run_child(bundle, backend, threads, timeout_s) for _ in range(runs)]
    medians = {k: None if None in (got := [r[k] for r in results]) else statistics.median(got) for k in FIGURES}
    return {**medians, "cold_start_runs": runs}  # None: a figure this system cannot give (no /proc)


def _run_child(bundle: Path, backend: str | None, threads: int | None, timeout_s: float) -> dict[str, Any]:
    """One fresh process (this interpreter, this environment, the same edge_msa first on its path) on `bundle`."""
    import subprocess

    source = str(Path(edge_msa.__file__).resolve().parent.parent)
    argv = [sys.executable, "-c", CHILD, source, str(bundle), backend or "", str(threads or "")]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ColdStartFailed(f"a fresh process loading it gave no answer within {timeout_s:g} s") from None
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if done.returncode == 0 and all(k in result for k in FIGURES):
        return result
    if done.returncode < 0:  # killed before it could say why: its stderr's last line is no answer
        raise ColdStartFailed(f"a fresh process loading it was killed by {_signal_name(-done.returncode)}")
    said = result.get("error") or next(iter(done.stderr.strip().splitlines()[-1:]), "")
    raise ColdStartFailed(said or f"the process exited with status {done.returncode} and said nothing")


def _signal_name(number: int) -> str:
    """A signal as a row names it: SIGKILL is most often the out-of-memory killer, a bundle too big for the board."""
    import signal

    try:
        name = signal.Signals(number).name
    except ValueError:  # a number this platform has no name for
        return f"signal {number}"
    return f"{name} (what the kernel's out-of-memory killer sends)" if name == "SIGKILL" else name


def child(started: float) -> None:
    """The fresh process (`CHILD`; argv: bundle, backend or "", threads or ""): imports the runtime, then opens the
    bundle, and prints FIGURES as one JSON line, or {"error": one line}. cold_start_ms counts from `started` (its
    first line: the imports included), load_ms from after the imports (`import_runtime`), and cold_start_rss_mb is
    its peak resident memory: what a process serving that bundle alone needs."""
    bundle, backend, threads = Path(sys.argv[1]), sys.argv[2] or None, int(sys.argv[3]) if sys.argv[3] else None
    try:
        import_runtime(bundle, backend)
        imported = time.perf_counter()
        open_bundle(bundle, backend, threads)
        ready = time.perf_counter()
    except Exception as exc:
        print(json.dumps({"error": failure_text(exc)}))
        return
    print(json.dumps({"cold_start_ms": (ready - started) * 1e3, "load_ms": (ready - imported) * 1e3,
                      "cold_start_rss_mb": own_peak_rss_mb()}))


def runtime_modules(backend: str | None) -> tuple[str, ...]:
    """What loading a bundle on `backend` (None: unknown) imports once per process: the runtime, its backend's
    module and library, and the text front end's libraries (tokenizers; onnxruntime for a frozen encoder, whatever
    the backend). TensorRT's cuda-python, whose module name depends on its version, is `import_runtime`'s."""
    from edge_msa.runtime.backend import BACKENDS

    libraries = {"tensorrt": ("tensorrt",)}.get(backend or "", ())
    module = (BACKENDS[backend].split(":")[0],) if backend in BACKENDS else ()
    return ("edge_msa.runtime.predictor", "tokenizers", "onnxruntime", *module, *libraries)


def import_runtime(bundle: Path, backend: str | None) -> None:
    """Import `runtime_modules` for the backend `bundle` loads on (`backend`, else the one it was exported for), so
    that load_ms leaves them out. One that will not import is left to the load, which says what is missing in its
    own words."""
    import importlib

    if backend is None:
        from edge_msa.runtime.manifest import read_manifest
        try:
            backend = read_manifest(bundle).backend
        except EdgeMSAError:  # no bundle there, or a broken one: its load fails, in its own words
            pass
    for name in runtime_modules(backend):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if backend == "tensorrt":  # cuda.bindings.runtime, or cuda.cudart before cuda-python 12.6 (JetPack's): its choice
        from edge_msa.runtime.tensorrt_backend import cuda_runtime
        try:
            cuda_runtime()
        except EdgeMSAError:
            pass


def failure_text(exc: BaseException) -> str:
    """A failure as one line of a row's status (errors.one_line: every line of it, not the first alone, which for
    onnxruntime is its generic half): our errors' own words, others' prefixed with their type."""
    return one_line(exc if isinstance(exc, EdgeMSAError) else f"{type(exc).__name__}: {exc}", 300)
