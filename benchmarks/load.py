"""Load generator for `edge-msa serve`: N client threads POST predictions until a request count or a time
limit is reached (whichever comes first), so it always stops by itself.

Standard library only (http.client keep-alive connections, one per client thread), so it runs on the
board next to the service without extra installs. Given the server's pid it also reads /proc: the server's
CPU time per request (user + system, all threads), which unlike wall-clock throughput stays comparable when
other work shares the cores, and RSS samples for soak runs. Usage: `python -m edge_msa.benchmarks.load --help`.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from edge_msa.atomic import write_text
from edge_msa.errors import InputError
from edge_msa.jsonio import dumps
from edge_msa.serve.routes import PREDICT

from .memory import status_bytes
from .timing import summarize

SENTENCES = ("what a wonderful film", "not my thing at all", "the acting was fine but the plot dragged",
             "i loved every minute of it", "honestly it was boring", "an okay movie, nothing special")
EPILOG = """examples:
  python -m edge_msa.benchmarks.load --url http://127.0.0.1:8000 --concurrency 1 4 16 64 --requests 2000
  python -m edge_msa.benchmarks.load --concurrency 16 --requests 12000 --duration 600 --pid 1234 --out soak.json
  python -m edge_msa.benchmarks.load --payload inputs.jsonl   # cycle through these JSON bodies (one per line)
"""


def proc_file(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except OSError:
        raise InputError(f"cannot read /proc/{pid}/{name}; "
                         "expected --pid to be the live server's pid (Linux)") from None


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB (Linux /proc), read by the bench's reader: MiB, not the bench
    report's MB, because the soak figures (README, test_serve_soak) are MiB under this `rss_mib` name."""
    size = status_bytes(proc_file(pid, "status"), "VmRSS")
    if size is None:
        raise InputError(f"/proc/{pid}/status has no VmRSS; expected a live Linux process")
    return size / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used, all threads (Linux /proc)."""
    fields = proc_file(pid, "stat").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def run_load(url: str, concurrency: int, requests: int, duration: float, bodies: list[bytes],
             pid: int | None = None, rss_every: int = 500) -> dict[str, Any]:
    """POST `requests` bodies (cycled) to url from `concurrency` threads, stopping early after `duration` s.
    Returns latency percentiles of the 200s, throughput, counts by status and, when the server's pid is
    given, its CPU ms per request and RSS samples (every `rss_every` completed requests)."""
    if concurrency < 1 or requests < 1 or duration <= 0 or not bodies:
        raise InputError(f"need concurrency >= 1, requests >= 1, duration > 0 and a body; got {concurrency}, "
                         f"{requests}, {duration}, {len(bodies)} bodies")
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:  # the client threads died on it one by one, and 0 requests read as a result
        raise InputError(f"url '{url}' has no host; expected http://HOST[:PORT]/PATH")
    codes: dict[int, int] = {}
    lock, issued, latencies, rss = threading.Lock(), [0], [], []
    cpu0 = cpu_seconds(pid) if pid else 0.0
    start = time.perf_counter()
    deadline = start + duration

    def client() -> None:
        conn = http.client.HTTPConnection(host, parts.port or 80, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                if issued[0] >= requests:
                    break
                n = issued[0]
                issued[0] += 1
            code, ms = post(conn, parts.path or PREDICT, bodies[n % len(bodies)])
            if code == 0:  # connection trouble: count it, reconnect
                conn.close()
                conn = http.client.HTTPConnection(host, parts.port or 80, timeout=60)
            with lock:
                codes[code] = codes.get(code, 0) + 1
                if code == 200:
                    latencies.append(ms)
                done = sum(codes.values())
                if pid and done % rss_every == 0:
                    rss.append((done, round(rss_mib(pid), 1)))
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done = sum(codes.values())
    cpu_ms = round((cpu_seconds(pid) - cpu0) * 1e3 / max(done, 1), 2) if pid else None
    stats = summarize(np.array(latencies), 1) if latencies else None
    return {"url": url, "concurrency": concurrency, "requests": done, "ok": codes.get(200, 0),
            "errors": done - codes.get(200, 0), "codes": {str(k): v for k, v in sorted(codes.items())},
            "wall_s": round(wall, 3), "throughput_rps": round(codes.get(200, 0) / wall, 1),
            "p50_ms": round(stats.p50, 2) if stats else None, "p99_ms": round(stats.p99, 2) if stats else None,
            "server_cpu_ms_per_request": cpu_ms, "rss_mib": rss}


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, float]:
    """(status, ms) of one POST; status 0 for a dropped or refused connection."""
    t0 = time.perf_counter()
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status, (time.perf_counter() - t0) * 1e3
    except (OSError, http.client.HTTPException):
        return 0, (time.perf_counter() - t0) * 1e3


def payloads(path: Path) -> list[bytes]:
    """Request bodies: the whole file, or one per non-empty line of a .jsonl file (any case, as the other readers
    take a suffix: inputs.JSONL was posted whole, as one malformed body)."""
    if path.suffix.lower() == ".jsonl":
        return [line.encode() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [path.read_bytes()]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| concurrency | requests | p50 ms | p99 ms | req/s | server CPU ms/request | errors |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['concurrency']} | {r['requests']} | {r['p50_ms']} | {r['p99_ms']} | {r['throughput_rps']} | "
              f"{r['server_cpu_ms_per_request']} | {r['errors']} {'' if not r['errors'] else r['codes']} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_msa.benchmarks.load", description=__doc__.split("\n\n")[0],
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=f"http://127.0.0.1:8000{PREDICT}", help="endpoint to POST to")
    p.add_argument("--concurrency", type=int, nargs="+", default=[16], help="client threads; several = a sweep")
    p.add_argument("--requests", type=int, default=1000, help="requests per concurrency level (default 1000)")
    p.add_argument("--duration", type=float, default=60.0, help="at most this many seconds per level (default 60)")
    p.add_argument("--payload", default=None, help="a JSON file to POST, or a .jsonl file of bodies to cycle "
                   "through (default: short sentences as text)")
    p.add_argument("--pid", type=int, default=None, help="the server's pid: report its CPU per request and "
                   "sample its RSS (soak)")
    p.add_argument("--rss-every", type=int, default=500, help="sample RSS every this many requests (default 500)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    try:
        if args.payload and not Path(args.payload).is_file():
            raise InputError(f"--payload '{args.payload}' does not exist; expected a JSON file to POST")
        bodies = payloads(Path(args.payload)) if args.payload else [json.dumps({"text": s}).encode()
                                                                    for s in SENTENCES]
        rows = [run_load(args.url, c, args.requests, args.duration, bodies, args.pid, args.rss_every)
                for c in args.concurrency]
    except InputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    print(table(rows))
    if args.out:
        write_text(args.out, dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
