"""A shortened soak of `edge-msa serve` (the README's >= 10,000-request soak is the long version): after
warm-up, the server's RSS must stay flat while thousands of requests and feedback records go through."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')

from conftest import serve_process  # noqa: E402
from edge_msa.benchmarks.load import run_load  # noqa: E402

pytestmark = pytest.mark.slow
GROWTH_MIB = 16  # allowed RSS growth from the end of warm-up to the end (allocator noise, the bounded caches)


def test_rss_stays_flat_after_warm_up(media_bundle):
    bodies = [json.dumps({"text": f"soak sentence {i}, {'very ' * (i % 9)}long"}).encode() for i in range(50)]
    with serve_process(media_bundle, "--remember", "500") as (proc, url):
        run_load(f"{url}/v1/predict", 8, 400, 120, bodies)  # warm-up: caches and allocator arenas fill
        result = run_load(f"{url}/v1/predict", 8, 2000, 300, bodies, pid=proc.pid, rss_every=200)
    assert result["ok"] == 2000, result["codes"]
    rss = [mib for _, mib in result["rss_mib"]]
    assert len(rss) >= 10 and max(rss) - rss[0] < GROWTH_MIB, rss
