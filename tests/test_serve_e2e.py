"""`edge-msa serve` end to end: the real uvicorn server in a subprocess on loopback, real HTTP clients.

Load (400 requests from 16 clients, all 200), the bad-request battery (all 4xx JSON, server still
healthy), Prometheus /metrics, overload (429 + Retry-After), SIGTERM drain (exit 0 within 10 s), and the
feedback log surviving kill -9 with every acknowledged record.
"""
from __future__ import annotations

import base64
import gzip
import http.client
import io
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')

from conftest import DATA_ROOT, serve_process  # noqa: E402
from edge_msa.benchmarks.load import run_load  # noqa: E402
from edge_msa.cli import main  # noqa: E402


def call(url: str, body: bytes | None = None, ctype: str = "application/json", method: str | None = None,
         headers: dict[str, str] | None = None):
    """(status, headers, parsed JSON or text) of one request; HTTP errors are answers, not exceptions."""
    sent = {**({"Content-Type": ctype} if body else {}), **(headers or {})}
    req = urllib.request.Request(url, data=body, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, headers, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    is_json = headers.get("content-type", "").startswith("application/json")
    return status, headers, json.loads(raw) if is_json else raw.decode()


def post(url: str, obj) -> tuple[int, dict]:
    status, _, body = call(url, json.dumps(obj).encode())
    return status, body


def wav_base64(seconds: float) -> str:
    import soundfile

    buf = io.BytesIO()
    t = np.arange(int(16000 * seconds)) / 16000
    soundfile.write(buf, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def server(media_bundle):
    with serve_process(media_bundle, "--max-body", "400000", "--max-text", "500", "--max-media-s", "5",
                       "--body-timeout-s", "3", "--body-deadline-s", "5") as (p, url):
        yield url


def test_400_requests_from_16_clients_all_get_a_score(server):
    result = run_load(f"{server}/v1/predict", concurrency=16, requests=400, duration=120,
                      bodies=[json.dumps({"text": f"sentence number {i} was fine"}).encode() for i in range(7)])
    assert result["requests"] == 400 and result["ok"] == 400, result["codes"]
    assert result["p50_ms"] > 0 and result["throughput_rps"] > 0
    status, _, text = call(f"{server}/metrics")
    sizes = [line for line in text.splitlines() if line.startswith("edge_msa_batch_size_count")]
    assert float(sizes[0].split()[-1]) < 400, "16 concurrent clients never shared a batch"


def test_predict_forms_json_multipart_base64_batch(server):
    status, one = post(f"{server}/v1/predict", {"text": "what a wonderful film", "audio": wav_base64(1.0)})
    assert status == 200 and -3 <= one["score"] <= 3 and one["polarity"] in ("positive", "negative", "neutral")
    assert set(one["ran"]) | set(one["skipped"]) == {"text", "audio", "video"} and len(one["request_id"]) == 32
    assert one["ms"]["total"] > 0
    status, feats = post(f"{server}/v1/predict", {"audio": np.ones((3, 56)).tolist()})
    assert status == 200 and feats["skipped"]["text"] == "missing"
    boundary = "b0undary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nnot my thing\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + base64.b64decode(wav_base64(0.5)) + \
        f"\r\n--{boundary}--\r\n".encode()
    status, _, multi = call(f"{server}/v1/predict", form, f"multipart/form-data; boundary={boundary}")
    assert status == 200 and "text" in multi["ran"], multi
    status, many = post(f"{server}/v1/predict/batch", {"inputs": [{"text": "good"}, {"text": "bad"}]})
    assert status == 200 and len(many["results"]) == 2
    assert len({r["request_id"] for r in many["results"]}) == 2


def form_with_empty_audio(filename: str) -> bytes:
    """A multipart body: a text field and an audio file part of no bytes named `filename`."""
    return ('--b\r\nContent-Disposition: form-data; name="text"\r\n\r\nnot my thing\r\n'
            f'--b\r\nContent-Disposition: form-data; name="audio"; filename="{filename}"\r\n'
            'Content-Type: application/octet-stream\r\n\r\n\r\n--b--\r\n').encode()


def test_a_form_whose_file_input_was_left_empty_is_scored_on_its_text(server):
    """A browser submits a file input left empty as a part with filename="" and no bytes: an HTML form with text
    and an optional clip answered 415 "audio is not a supported media file" to every user who typed text only, and
    a picked 0-byte file (or "audio": "" in JSON) got the same word for what is no file at all."""
    status, _, answer = call(f"{server}/v1/predict", form_with_empty_audio(""), "multipart/form-data; boundary=b")
    assert status == 200 and answer["ran"] == ["text"] and answer["skipped"]["audio"] == "missing", answer
    for body, ctype in [(form_with_empty_audio("a.wav"), "multipart/form-data; boundary=b"),
                        (b'{"text": "hi", "audio": ""}', "application/json")]:
        status, _, answer = call(f"{server}/v1/predict", body, ctype)
        assert (status, answer) == (400, {"error": "audio is an empty file (0 bytes); expected a media file with "
                                                   "some audio in it"})


def test_a_refusal_from_inside_the_batch_does_not_name_the_server_scratch_path(server):
    """An upload the front end refused in the batch (audio shorter than one frame; parse_item now finds it from the
    header) was answered "/tmp/edge-msa-serve-1x2y3z/audio.wav: audio is 0.1 ms long; ...": a path the client never
    sent."""
    one_sample = wav_base64(1 / 16000)
    status, answer = post(f"{server}/v1/predict", {"audio": one_sample})
    assert (status, answer) == (400, {"error": "audio is 0.1 ms long; expected at least 25 ms (one frame)"})
    status, answer = post(f"{server}/v1/predict/batch", {"inputs": [{"text": "fine"}, {"audio": one_sample}]})
    assert (status, answer) == (400, {"error": "input #1: audio is 0.1 ms long; expected at least 25 ms (one frame)"})


CLIP = DATA_ROOT / "raw_av" / "cremad" / "data" / "1001_DFA_HAP_XX.flv"


@pytest.mark.skipif(not CLIP.is_file(), reason=f"CREMA-D clip not found at {CLIP}")
def test_a_real_flv_upload_runs_the_video_front_end(server):
    boundary = "fLvB0undary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\ndon't forget a jacket\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"clip.flv\"\r\n"
            f"Content-Type: video/x-flv\r\n\r\n").encode() + CLIP.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, _, answer = call(f"{server}/v1/predict", form, f"multipart/form-data; boundary={boundary}")
    assert status == 200, answer
    assert "video" in answer["ran"] or answer["skipped"]["video"].startswith("gate")
    assert set(answer["ran"]) | set(answer["skipped"]) == {"text", "audio", "video"}


BAD = [  # (what, path, body, content type, expected status)
    ("malformed JSON", "/v1/predict", b'{"text": ', "application/json", 400),
    ("not UTF-8", "/v1/predict", b'{"text": "\xff"}', "application/json", 400),
    ("JSON list", "/v1/predict", b"[1, 2]", "application/json", 400),
    ("no modality", "/v1/predict", b"{}", "application/json", 400),
    ("unknown field", "/v1/predict", b'{"txt": "hi"}', "application/json", 400),
    ("text is a number", "/v1/predict", b'{"text": 5}', "application/json", 400),
    ("empty text", "/v1/predict", b'{"text": "  "}', "application/json", 400),
    ("lone surrogate", "/v1/predict", b'{"text": "bad \\ud800 text"}', "application/json", 400),
    ("text too long", "/v1/predict", json.dumps({"text": "a" * 501}).encode(), "application/json", 413),
    ("NaN features", "/v1/predict", json.dumps({"audio": [[float("nan")] * 56]}).encode(), "application/json", 400),
    ("Infinity features", "/v1/predict", b'{"audio": [[Infinity]]}', "application/json", 400),
    ("huge number", "/v1/predict", json.dumps({"audio": [[1e300] * 56]}).encode(), "application/json", 400),
    ("wrong dim", "/v1/predict", b'{"audio": [[1, 2]]}', "application/json", 400),
    ("ragged array", "/v1/predict", b'{"audio": [[1], [1, 2]]}', "application/json", 400),
    ("strings in array", "/v1/predict", b'{"audio": [["a"]]}', "application/json", 400),
    ("not base64", "/v1/predict", b'{"video": "not base64!"}', "application/json", 400),
    ("not a media file", "/v1/predict", b'{"video": "aGVsbG8gd29ybGQ="}', "application/json", 415),
    ("corrupt WAV", "/v1/predict", json.dumps({"audio": base64.b64encode(b"RIFF\0\0\0\0WAVEjunk").decode()}).encode(),
     "application/json", 400),
    ("audio too long", "/v1/predict", json.dumps({"audio": wav_base64(6.0)}).encode(), "application/json", 413),
    ("body too big", "/v1/predict", json.dumps({"text": "a" * 450000}).encode(), "application/json", 413),
    ("body 10x too big (drained, not reset)", "/v1/predict", b" " * 4_000_000, "application/json", 413),
    ("text/plain", "/v1/predict", b"hello", "text/plain", 415),
    ("text/plain 10x too big (drained, not reset)", "/v1/predict", b" " * 4_000_000, "text/plain", 413),
    ("text/plain feedback 10x too big (drained)", "/v1/feedback", b" " * 4_000_000, "text/plain", 413),
    ("no content type", "/v1/predict", b"hello", "", 415),
    ("batch not a list", "/v1/predict/batch", b'{"inputs": 3}', "application/json", 400),
    ("batch with a bad item", "/v1/predict/batch", b'{"inputs": [{"text": "ok"}, {"audio": [[1]]}]}',
     "application/json", 400),
    ("batch with an unknown field", "/v1/predict/batch", b'{"inputs": [{"text": "ok"}], "max_batch": 1}',
     "application/json", 400),
    ("multipart batch", "/v1/predict/batch", b"x", "multipart/form-data; boundary=x", 415),
    ("form text not UTF-8", "/v1/predict",
     b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\ncaf\xe9\r\n--x--\r\n',
     "multipart/form-data; boundary=x", 400),
    ("broken multipart", "/v1/predict", b"--x\r\nnonsense", "multipart/form-data; boundary=x", 400),
    ("feedback, service without --feedback", "/v1/feedback", b'{"request_id": "nope", "label": 1}', "application/json", 404),
    ("feedback, bad label", "/v1/feedback", b'{"request_id": "x", "label": "good"}', "application/json", 400),
    ("unknown path", "/v2/predict", b"{}", "application/json", 404),
    ("unknown path, 10x too big (drained, not reset)", "/v1/nope", b" " * 4_000_000, "application/json", 404),
    ("POST on a GET route, 10x too big (drained, not reset)", "/v1/info", b" " * 4_000_000, "application/json", 405),
]


def test_every_bad_request_gets_a_4xx_json_error_and_the_server_stays_healthy(server):
    for what, path, body, ctype, expected in BAD:
        status, headers, answer = call(f"{server}{path}", body, ctype)
        assert status == expected, (what, status, answer)
        assert isinstance(answer, dict) and set(answer) == {"error"} and answer["error"], (what, answer)
    status, _, answer = call(f"{server}/v1/predict", method="GET")  # starlette said "Method Not Allowed", no more
    assert status == 405 and answer["error"] == "GET is not allowed on /v1/predict; expected POST"
    status, _, answer = call(f"{server}/v2/predict", b"{}")
    assert status == 404 and answer["error"].startswith("no route /v2/predict; expected one of /, /healthz")
    status, _, answer = call(f"{server}/v1/predict", b"x", "multipart/form-data")
    assert answer["error"] == "malformed multipart form (Missing boundary in multipart.); expected a text field and " \
                              "audio / video files"
    form = b'--b\r\nContent-Disposition: form-data; name="audio"\r\n\r\nnot a file\r\n--b--\r\n'
    status, _, answer = call(f"{server}/v1/predict", form, "multipart/form-data; boundary=b")
    assert status == 400 and answer["error"] == "form field 'audio' is a text field; expected a file"
    status, _, answer = call(f"{server}/v1/predict/batch", b'{"inputs": [{"text": "ok"}, {"text": " "}]}')
    assert status == 400 and answer["error"] == "input #1: empty text; expected at least one word"  # which input
    status, _, answer = call(f"{server}/v1/feedback", b'{"request_id": "r", "label": 1}')  # started without --feedback
    assert status == 404 and answer["error"] == ("feedback is off on this service; expected one started with "
                                                 "--feedback log.sqlite")
    assert call(f"{server}/healthz")[0] == 200
    status, good = post(f"{server}/v1/predict", {"text": "still fine"})
    assert status == 200 and "score" in good


def test_a_compressed_body_is_refused_by_its_encoding_not_as_malformed_json(server):
    """A client that gzips its requests (a mobile HTTP stack's interceptor) was told "malformed JSON ('utf-8' codec
    can't decode byte 0x8b ...)", which points at the JSON it built, not at the compression."""
    zipped = gzip.compress(b'{"text": "hi"}')
    for path in ("/v1/predict", "/v1/feedback"):
        status, _, answer = call(f"{server}{path}", zipped, headers={"Content-Encoding": "gzip"})
        assert (status, answer) == (415, {"error": "content encoding 'gzip' is not supported; expected an uncompressed "
                                                   "body"})
    assert call(f"{server}/v1/predict", b'{"text": "hi"}', headers={"Content-Encoding": "identity"})[0] == 200


def request_counts(url: str, path: str) -> dict[str, float]:
    """edge_msa_http_requests_total of one path on /metrics, by status code."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(call(f"{url}/metrics")[2])}
    return {s.labels["code"]: s.value for s in families["edge_msa_http_requests"].samples
            if s.labels.get("path") == path and s.name.endswith("_total")}


def test_a_client_hanging_up_mid_body_is_counted_apart_from_bugs(server):
    """A client that closed its connection mid-upload raised starlette's ClientDisconnect out of the route: counted
    as a 500 on /metrics (an alert on 5xx fired for a phone leaving coverage) with a traceback in the server log."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n" + b" " * 1000)
    deadline = time.monotonic() + 30
    while "499" not in (codes := request_counts(server, "/v1/predict")):
        assert time.monotonic() < deadline, codes
        time.sleep(0.1)
    assert "500" not in codes, codes


@pytest.mark.parametrize("size, encoding, status, error", [
    (4_000_000, "", 413, "body has 4000000 bytes; expected at most 400000"),
    (300_000, "Content-Encoding: gzip\r\n", 415, "content encoding 'gzip' is not supported; expected an uncompressed "
                                                  "body")])
def test_a_body_its_header_refuses_is_refused_before_it_is_read_and_the_connection_kept(server, size, encoding,
                                                                                         status, error):
    """A Content-Length over --max-body was answered only once the body was read, up to 16x the limit (128 MiB at
    the default), though the header said it all: the client of a 1 GB upload waited for its bytes to go out, and
    curl, which asks `Expect: 100-continue` before a large upload, was told to send them. It is a 413 at once now,
    before any body byte, as nginx answers; uvicorn drops the body a client sends anyway and keeps the connection.
    So is a Content-Encoding the service does not take (415), which was answered once the body was read whole.
    A request that asks to close (urllib's `Connection: close`) is still drained first: closed mid-send, its client
    was reset before it read the 413 (the 10x case of BAD)."""
    host, port = server.removeprefix("http://").split(":")
    head = ("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n{encoding}{{}}\r\n")
    for expect in ("", "Expect: 100-continue\r\n"):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(head.format(expect).encode())  # the header alone: the answer must not wait for the body
            answer = http.client.HTTPResponse(s)
            answer.begin()
            assert answer.status == status and json.loads(answer.read()) == {"error": error}
            if not expect:  # sent all the same: dropped, and the connection serves the next request
                s.sendall(b" " * size + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                after = http.client.HTTPResponse(s)
                after.begin()
                assert after.status == 200 and json.loads(after.read())["status"] == "ok"


def test_a_body_that_stalls_is_answered_408_and_closed_while_others_are_served(server):
    """uvicorn times out no body in progress: a client that sent its header and 11 of its 1000 bytes, then nothing,
    held its connection for ever (no answer in 30 s; uvicorn has no timer for it), as did one declaring 10x
    --max-body with `Connection: close` (drained, see read_body). Both are answered after --body-timeout-s (3 here)
    without a byte, the connection closed, and a prompt client is served meanwhile: 408, or 413 where the declared
    size is over the limit (what its client must change; see the next test). So is one to an unknown path, whose
    body is drained before its 404 (see http_error) at the same pace, and answered its 404 (drain's rule)."""
    host, port = server.removeprefix("http://").split(":")
    stalled = {}
    for path, length, close in (("/v1/predict", 1000, ""), ("/v1/predict", 4_000_000, "Connection: close\r\n"),
                                ("/v1/nope", 4_000_000, "Connection: close\r\n")):
        s = socket.create_connection((host, int(port)), timeout=15)
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {length}\r\n{close}\r\n{{\"text\": \"a".encode())
        stalled[path, length] = s
    start = time.monotonic()
    assert post(f"{server}/v1/predict", {"text": "served meanwhile"})[0] == 200
    expected = {("/v1/predict", 1000): (408, "request body stalled: no byte for 3 s after 11 bytes; expected the "
                                             "rest of the body within 3 s of its last bytes"),
                ("/v1/predict", 4_000_000): (413, "body has 4000000 bytes; expected at most 400000"),
                ("/v1/nope", 4_000_000): (404, "no route /v1/nope; expected one of ")}
    for sent, s in stalled.items():
        with s:
            answer = http.client.HTTPResponse(s)
            answer.begin()
            assert (answer.status, answer.getheader("connection")) == (expected[sent][0], "close"), sent
            assert json.loads(answer.read())["error"].startswith(expected[sent][1]), sent
            assert s.recv(1) == b""  # closed: the rest of the body is not awaited
    assert 2.5 < time.monotonic() - start < 10


def test_a_body_fed_a_byte_per_pause_is_answered_408_at_the_body_deadline(server):
    """--body-timeout-s bounds each pause of a body, not the body: a client sending a byte every 0.7 s (well within
    the 3 s pause here) held its connection, its task and its body buffer for as long as it liked, and a few
    hundred such (a slowloris client) held a worker's connections. --body-deadline-s (5 here) bounds the whole
    body: 408 with one line, the connection closed, counted on /metrics as a 408 of its route."""
    host, port = server.removeprefix("http://").split(":")
    before = request_counts(server, "/v1/predict").get("408", 0)
    with socket.create_connection((host, int(port)), timeout=15) as s:
        start = time.monotonic()
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"text\": \"a")
        for _ in range(6):  # until 4.2 s: the 3 s pause would end at 7.2 s, the deadline ends the body at 5 s
            time.sleep(0.7)
            s.sendall(b"a")
        answer = http.client.HTTPResponse(s)
        answer.begin()
        assert answer.status == 408 and answer.getheader("connection") == "close"
        assert json.loads(answer.read()) == {"error": "request body not whole after 5 s (17 bytes); expected the "
                                                      "whole body within 5 s of its header"}
        assert 4.5 < time.monotonic() - start < 7
        assert s.recv(1) == b""  # closed
    assert request_counts(server, "/v1/predict")["408"] == before + 1


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_body_over_the_limit_still_arriving_at_the_body_deadline_is_answered_413(server):
    """A body already known to exceed --max-body, by its Content-Length (`Connection: close`: drained, see
    read_body) or, chunked, by the bytes read, that was still arriving when --body-deadline-s (5 here) passed was
    answered 408, an invitation to send it again, slower or not, that can only fail again: the size is what its
    client must change. 413 now, the connection closed as the 408's was (the rest of the body is not awaited)."""
    host, port = server.removeprefix("http://").split(":")
    sent = {"body has 4000000 bytes": (b"Content-Length: 4000000\r\nConnection: close\r\n\r\n{\"text\": \"a", b"a"),
            "body has over 400000 bytes": (b"Transfer-Encoding: chunked\r\n\r\n" + chunk(b"a" * 400_001), chunk(b"a"))}
    clients = {}
    for size, (head, _) in sent.items():
        clients[size] = socket.create_connection((host, int(port)), timeout=15)
        clients[size].sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + head)
    start = time.monotonic()
    for _ in range(6):  # until 4.2 s: each pause within the 3 s --body-timeout-s, the whole past the deadline
        time.sleep(0.7)
        for size, s in clients.items():
            s.sendall(sent[size][1])
    for size, s in clients.items():
        with s:
            answer = http.client.HTTPResponse(s)
            answer.begin()
            assert (answer.status, answer.getheader("connection")) == (413, "close"), size
            assert json.loads(answer.read()) == {"error": f"{size}; expected at most 400000"}
            assert s.recv(1) == b""  # closed
    assert 4.5 < time.monotonic() - start < 7


def test_a_connection_whose_header_never_comes_is_closed_after_the_header_timeout(media_bundle):
    """uvicorn times nothing before a request's header is whole: a socket that sent nothing, half a header, or, after
    an answer, the first bytes of its next request (which stop uvicorn's keep-alive timer) was still open 8 s on,
    and would have been for ever. Each is closed now --header-timeout-s after it connected or was answered, with a
    408 where a request had begun; a keep-alive client that asks again within it is served, past the timeout. /metrics
    counts them (they never reach the app, so its request counts left them out)."""
    from prometheus_client.parser import text_string_to_metric_families

    with serve_process(media_bundle, "--header-timeout-s", "1") as (_, url):
        host, port = url.removeprefix("http://").split(":")
        stalled = {sent: socket.create_connection((host, int(port)), timeout=10)
                   for sent in (b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n")}
        start = time.monotonic()
        for sent, s in stalled.items():
            s.sendall(sent)
        with socket.create_connection((host, int(port)), timeout=10) as kept:
            for _ in range(3):  # 1.8 s in all: each request within 1 s of the previous answer
                time.sleep(0.6)
                kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = http.client.HTTPResponse(kept)
                answer.begin()
                assert answer.status == 200 and json.loads(answer.read())["status"] == "ok"
            stalled[b"GET /heal"] = kept
            kept.sendall(b"GET /heal")  # the next request's first bytes, and no more
            for sent, s in stalled.items():
                if sent:
                    answer = http.client.HTTPResponse(s)
                    answer.begin()
                    assert answer.status == 408 and answer.getheader("connection") == "close"
                    assert json.loads(answer.read()) == {"error": "request header incomplete after 1 s; expected a "
                                                         "whole request header within 1 s of connecting or of the "
                                                         "previous answer"}
                assert s.recv(1) == b"", sent  # closed
                s.close()
        assert 2.5 < time.monotonic() - start < 8
        assert call(f"{url}/healthz")[0] == 200
        # what the app never saw is counted apart, so an operator tells a slowloris or a leaking client from quiet
        closes = {s.labels["outcome"]: s.value for f in text_string_to_metric_families(call(f"{url}/metrics")[2])
                  if f.name == "edge_msa_header_timeouts" for s in f.samples if s.name.endswith("_total")}
        assert closes == {"408": 2, "closed": 1}


def test_metrics_are_prometheus_text_and_info_is_the_manifest(server, media_bundle):
    from prometheus_client.parser import text_string_to_metric_families

    post(f"{server}/v1/predict", {"text": "count me", "audio": np.ones((2, 56)).tolist()})
    call(f"{server}/v1/predict", b"{", "application/json")
    status, headers, text = call(f"{server}/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"edge_msa_http_requests", "edge_msa_http_request_seconds", "edge_msa_batch_size",
            "edge_msa_modality_inputs", "edge_msa_skip_ratio", "edge_msa_queue_depth",
            "edge_msa_header_timeouts"} <= set(families)
    assert {"200", "400"} <= set(request_counts(server, "/v1/predict"))
    ran_audio = [s.value for s in families["edge_msa_modality_inputs"].samples
                 if s.labels == {"modality": "audio", "outcome": "ran"} and s.name.endswith("_total")]
    assert ran_audio[0] >= 1
    status, _, info = call(f"{server}/v1/info")
    manifest = json.loads((media_bundle / "manifest.json").read_text())
    assert status == 200 and info["manifest"]["graphs"] == manifest["graphs"]
    assert info["service"]["limits"]["max_text_chars"] == 500
    status, _, page = call(f"{server}/")
    assert status == 200 and 'id="predict"' in page


def test_openapi_describes_the_bodies_this_service_takes(server):
    """/openapi.json and /docs were switched off (404), and FastAPI infers no body from the raw-request handlers: an
    app developer had no schema to generate a client from. It now carries the bundle's dims and the service's limits."""
    status, _, doc = call(f"{server}/openapi.json")
    info = call(f"{server}/v1/info")[2]
    limits = info["service"]["limits"]
    dims = dict(zip(("text", "audio", "video"), info["manifest"]["feature_spec"]["dims"]))
    assert status == 200
    operation_ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(operation_ids) == len(set(operation_ids))  # a duplicate breaks client generators
    body = {path: doc["paths"][path]["post"]["requestBody"]["content"]
            for path in ("/v1/predict", "/v1/predict/batch", "/v1/feedback")}
    one = body["/v1/predict"]["application/json"]["schema"]
    assert set(one["properties"]) == set(dims) and one["additionalProperties"] is False
    for m, d in dims.items():
        array, raw = one["properties"][m]["oneOf"]
        assert array["maxItems"] == limits["max_steps"] and array["items"]["maxItems"] == array["items"]["minItems"]
        assert array["items"]["minItems"] == d and raw["type"] == "string"
    assert raw["contentEncoding"] == "base64" and one["properties"]["text"]["oneOf"][1]["maxLength"] == 500
    assert set(body["/v1/predict"]["multipart/form-data"]["schema"]["properties"]) == set(dims)
    assert body["/v1/predict/batch"]["application/json"]["schema"]["properties"]["inputs"]["maxItems"] == 64
    label = body["/v1/feedback"]["application/json"]["schema"]["properties"]["label"]
    assert (label["minimum"], label["maximum"]) == (-3, 3)
    assert doc["paths"]["/v1/feedback"]["post"]["responses"]["4XX"]["content"]["application/json"]["schema"][
        "required"] == ["error"]
    # nor do the answers publish defaults: Limits showed the library's max_text_chars 2000 on this --max-text 500 server
    answers = doc["components"]["schemas"]
    assert [(name, field) for name, schema in answers.items() for field, shown in schema["properties"].items()
            if "default" in shown] == []
    assert set(answers["Limits"]["required"]) == set(limits)
    status, _, page = call(f"{server}/docs")
    assert status == 200 and "/openapi.json" in page and "Swagger UI did not load" in page  # shown offline


def test_each_answer_is_what_the_published_schema_says(media_bundle, tmp_path):
    """/openapi.json documented no 200 body, so a generated client had no types for any answer. Each route's real
    answer now validates against the class its published schema was made from, and carries exactly the fields that
    schema requires: a field renamed in the handler or in the class alone fails here. The answers are still written
    by the strict writer (inf as "Infinity", which the schema admits), not re-serialised by pydantic (null)."""
    from pydantic import TypeAdapter

    from edge_msa.serve import openapi

    with serve_process(media_bundle, "--feedback", str(tmp_path / "log.sqlite"), "--max-media-s", "inf") as (_, url):
        doc = call(f"{url}/openapi.json")[2]
        answers = {("/v1/predict", "post"): post(f"{url}/v1/predict", {"text": "a fine day"}),
                   ("/v1/predict/batch", "post"): post(f"{url}/v1/predict/batch", {"inputs": [{"text": "so so"}] * 2}),
                   ("/healthz", "get"): call(f"{url}/healthz")[::2], ("/v1/info", "get"): call(f"{url}/v1/info")[::2]}
        request_id = answers["/v1/predict", "post"][1]["request_id"]
        answers["/v1/feedback", "post"] = post(f"{url}/v1/feedback", {"request_id": request_id, "label": 1.5})
    for (path, method), (status, body) in answers.items():
        schema = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        name = schema["$ref"].removeprefix("#/components/schemas/")
        assert status == 200 and set(doc["components"]["schemas"][name]["required"]) == set(body), path
        TypeAdapter(getattr(openapi, name)).validate_python(body)
    media = doc["components"]["schemas"]["Limits"]["properties"]["max_media_seconds"]["anyOf"]
    assert answers["/v1/info", "get"][1]["service"]["limits"]["max_media_seconds"] == "Infinity"
    assert media == [{"type": "number"}, {"enum": ["Infinity", "-Infinity"]}]
    assert doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"].keys() == {"text/plain"}


def test_healthz_answers_head_as_uptime_monitors_probe(server):
    """`curl -I .../healthz` and monitors that probe with HEAD got 405: the service looked down while it served."""
    with urllib.request.urlopen(urllib.request.Request(f"{server}/healthz", method="HEAD"), timeout=30) as r:
        assert r.status == 200 and r.read() == b""


def test_overload_beyond_the_queue_bound_is_429_with_retry_after(media_bundle):
    with serve_process(media_bundle, "--max-batch", "1", "--max-queue", "2", "--max-items", "2") as (_, url):
        body = json.dumps({"text": "a long enough sentence to keep the single worker busy for a while"}).encode()
        with ThreadPoolExecutor(48) as pool:
            answers = list(pool.map(lambda _: call(f"{url}/v1/predict", body), range(160)))
        statuses = [a[0] for a in answers]
        assert set(statuses) <= {200, 429} and statuses.count(429) > 0 and statuses.count(200) > 0
        busy = next(a for a in answers if a[0] == 429)
        assert int(busy[1]["Retry-After"]) >= 1 and "retry after" in busy[2]["error"]
        assert call(f"{url}/healthz")[0] == 200


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_drains_in_flight_requests_and_exits_0_within_10_s(media_bundle, stop):
    """SIGTERM or Ctrl-C (SIGINT; it used to end a clean drain with `error: interrupted` and exit code 130)."""
    with serve_process(media_bundle, "--drain-s", "5") as (proc, url):
        body = json.dumps({"text": "drain me gently"}).encode()
        with ThreadPoolExecutor(4) as pool:  # light: the drain must fit in 5 s even on a contended CPU
            started = [pool.submit(call, f"{url}/v1/predict/batch",
                                   json.dumps({"inputs": [{"text": f"drain me {i}"}] * 2}).encode())
                       for i in range(4)]
            time.sleep(0.3)  # requests are in flight
            t0 = time.monotonic()
            proc.send_signal(stop)
            assert proc.wait(10) == 0
            assert time.monotonic() - t0 < 10
            answers = [f.result() for f in started]
        assert all(a[0] == 200 and len(a[2]["results"]) == 2 for a in answers), [a[0] for a in answers]
        with pytest.raises(OSError):
            call(f"{url}/v1/predict", body)


# `python -c` starting the CLI with a bug in the batch worker: it dies after the first batch it runs
WORKER_BUG = """import sys
from edge_msa.serve.app import Service
def bug(self, size, seconds):
    raise RuntimeError("a bug after the batch")
Service._on_batch = bug
from edge_msa.cli import main
sys.exit(main(sys.argv[1:]))"""


def test_a_dead_batch_worker_stops_the_server_with_exit_code_1_so_a_supervisor_restarts_it(media_bundle, tmp_path):
    """A batch worker dead on a bug left the process running for ever, answering 503 to every prediction and to
    /healthz: systemd (Restart=on-failure), Docker and Kubernetes without a liveness probe restart only a process
    that exits. It drains and exits 1 now, its last line saying why."""
    log = tmp_path / "serve.log"
    with serve_process(media_bundle, launcher=("-c", WORKER_BUG), log_path=log) as (proc, url):
        assert post(f"{url}/v1/predict", {"text": "answered; the worker dies after"})[0] == 200
        assert proc.wait(15) == 1
    assert log.read_text().splitlines()[-1] == (
        "error: stopped serving: the batch worker stopped on RuntimeError (see the server log); expected a restart by "
        "the service's supervisor (exit code 1)")
    with pytest.raises(OSError):
        call(f"{url}/healthz")


# `python -c` starting the CLI with a model that scores NaN for the text "broken" and a bug for the text "bug"
BROKEN_OR_BUG = """import sys
from edge_msa.runtime.predictor import BrokenModel, Predictor
run = Predictor.predict_batch
def predict_batch(self, items):
    texts = [item.get("text") for item in items]
    if "broken" in texts:
        raise BrokenModel("bundle", "the model scored nan (a test)")
    if "bug" in texts:
        raise RuntimeError("a bug in the batch")
    return run(self, items)
Predictor.predict_batch = predict_batch
from edge_msa.cli import main
sys.exit(main(sys.argv[1:]))"""


def test_every_500_leaves_a_line_naming_its_reason_in_the_server_log(media_bundle, tmp_path):
    """A BrokenModel's 500 was written nowhere but to its client: an operator reading the server log saw a healthy
    service. It leaves one line now; a bug's 500 leaves uvicorn's traceback, as it did."""
    log = tmp_path / "serve.log"
    with serve_process(media_bundle, launcher=("-c", BROKEN_OR_BUG), log_path=log) as (proc, url):
        assert post(f"{url}/v1/predict", {"text": "broken"}) == (500, {"error": "the model scored nan (a test)"})
        assert post(f"{url}/v1/predict", {"text": "bug"}) == (
            500, {"error": "internal error (RuntimeError); see the server log"})
        assert post(f"{url}/v1/predict", {"text": "fine"})[0] == 200
    lines = log.read_text().splitlines()
    assert lines[0] == "ERROR:    POST /v1/predict answered 500: the model scored nan (a test)"
    assert lines[1] == "ERROR:    Exception in ASGI application" and lines[-1] == "RuntimeError: a bug in the batch"


def test_serve_says_where_it_listens_so_port_0_is_usable(media_bundle, tmp_path):
    """uvicorn logs no address when it is handed a bound socket, so `edge-msa serve` started silently: the README's
    "http://127.0.0.1:8000/ is a demo page" was nowhere on screen, and with --port 0 the port could not be known."""
    log = tmp_path / "serve.log"
    with open(log, "w") as fh:  # a file, not a pipe: the server must never block on a full pipe
        proc = subprocess.Popen([sys.executable, "-m", "edge_msa", "serve", str(media_bundle), "--port", "0"],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not (said := re.search(r"serving .+ on (http://127\.0\.0\.1:(\d+)/) ", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert int(said.group(2)) > 0 and call(f"{said.group(1)}healthz")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_feedback_log_keeps_every_acknowledged_record_through_kill_9(media_bundle, tmp_path):
    log = tmp_path / "feedback.sqlite"
    acked, stop = [], threading.Event()

    def user(k: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                status, p = post(f"{url}/v1/predict", {"text": f"user {k} says sentence {i}"})
                status, ack = post(f"{url}/v1/feedback", {"request_id": p["request_id"], "label": (i % 7) - 3})
            except OSError:
                return  # the server is gone
            if status == 200:
                acked.append(p["request_id"])
            i += 1

    with serve_process(media_bundle, "--feedback", str(log)) as (proc, url):
        users = [threading.Thread(target=user, args=(k,)) for k in range(4)]
        for t in users:
            t.start()
        while len(acked) < 40:
            time.sleep(0.05)
        proc.kill()  # SIGKILL mid-stream: no shutdown code runs
        proc.wait(10)
        stop.set()
        for t in users:
            t.join(30)
    with sqlite3.connect(log) as db:
        stored = {r[0] for r in db.execute("SELECT request_id FROM feedback")}
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert set(acked) <= stored and len(acked) >= 40
    out = tmp_path / "label.csv"
    assert main(["feedback", "export", str(log), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode"
    assert len(lines) - 1 == len(stored)


def test_an_app_mounted_in_a_parent_app_answers_without_its_lifespan_and_serves_with_it(media_bundle):
    """starlette runs no mounted app's lifespan: create_app's app mounted in a user's own (`parent.mount("/msa",
    app)`) answered a 404 with a 500 (its handler read the limits from the lifespan's state) and a prediction
    waited for ever on a batch worker never started. The 404 is a 404 now, and a prediction and /healthz are one
    503 line saying the lifespan was not run; with the parent's lifespan entering the app's (the pattern
    create_app's docstring gives), the mounted app serves. Everything it names is under the mount's prefix: the 404's
    routes, the demo page's calls, /docs' schema and the schema's `servers`; the 503 drains a `Connection: close`
    body first, as the 404 does."""
    import contextlib

    import uvicorn
    from fastapi import FastAPI

    from edge_msa.serve.app import Service, create_app
    from edge_msa.serve.config import ServeConfig

    @contextlib.contextmanager
    def serving(app):  # uvicorn in this process, as a user's own service runs it
        sock = socket.create_server(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
        thread.start()
        try:
            while not server.started:
                time.sleep(0.05)
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/msa"
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()

    app = create_app(Service(ServeConfig(bundle=str(media_bundle))))

    @contextlib.asynccontextmanager
    async def lifespan(parent: FastAPI):
        async with app.router.lifespan_context(app):
            yield

    without, run = FastAPI(), FastAPI(lifespan=lifespan)
    for parent in (without, run):
        parent.mount("/msa", app)
    with serving(without) as url:
        status, _, answer = call(f"{url}/nope")
        assert status == 404 and answer["error"].startswith("no route /msa/nope; expected one of /msa/, /msa/healthz, "
                                                            "/msa/metrics")
        # urllib's `Connection: close`: answered before the body was read, its 4 MB upload was reset (as BAD's 10x)
        big = call(f"{url}/v1/predict", json.dumps({"text": "good " * 800_000}).encode())[::2]
        for answer in (post(f"{url}/v1/predict", {"text": "good"}), call(f"{url}/healthz")[::2], big):
            assert answer == (503, {"error": "not serving: the app's lifespan was not run, so its batch worker "
                                             "never started; expected the app run by `edge-msa serve`, or its "
                                             "lifespan entered by the parent app's (see create_app)"})
    with serving(run) as url:
        status, answer = post(f"{url}/v1/predict", {"text": "good"})
        assert status == 200 and -3 <= answer["score"] <= 3
        assert call(f"{url}/healthz")[0] == 200 and call(f"{url}/nope")[0] == 404
        # the schema's paths are the app's, its `servers` the prefix a client puts before them; the demo page and
        # /docs call the app under the prefix (the page called /v1/predict, the parent's path: a 404)
        schema = call(f"{url}/openapi.json")[2]
        assert schema["servers"] == [{"url": "/msa"}] and "/v1/predict" in schema["paths"]
        page = call(f"{url}/")[2]
        assert '"/msa/v1/predict"' in page and '"/msa/v1/feedback"' in page and '"/v1/' not in page
        assert '"/msa/openapi.json"' in call(f"{url}/docs")[2]
        counts = request_counts(url, "/v1/predict")  # by the app's routes, not all "other" under the mount's prefix
        assert counts == {"503": 2, "200": 1} and request_counts(url, "/healthz") == {"503": 1, "200": 1}


def test_serve_behind_a_proxy_that_strips_a_prefix_names_the_prefix_in_what_it_links(media_bundle):
    """nginx's `location /msa/ { proxy_pass http://127.0.0.1:8000/; }` sends /v1/predict for the client's
    /msa/v1/predict: without --root-path the demo page called /v1/predict (the proxy's own path, a 404), the schema
    had no `servers` and a 404 listed routes the client cannot reach. With --root-path /msa the requests come as the
    proxy sends them, without the prefix, and everything the service links or lists is under it."""
    from edge_msa.serve.routes import ROUTES

    with serve_process(media_bundle, "--root-path", "/msa") as (_, url):  # url: where the proxy sends its requests
        status, answer = post(f"{url}/v1/predict", {"text": "good"})
        assert status == 200 and -3 <= answer["score"] <= 3
        page = call(f"{url}/")[2]
        assert '"predict": "/msa/v1/predict"' in page and '"feedback": "/msa/v1/feedback"' in page
        schema = call(f"{url}/openapi.json")[2]
        assert schema["servers"] == [{"url": "/msa"}] and "/v1/predict" in schema["paths"]
        assert '"/msa/openapi.json"' in call(f"{url}/docs")[2]
        assert call(f"{url}/nope")[::2] == (404, {"error": f"no route /msa/nope; expected one of "
                                                           f"{', '.join('/msa' + route for route in ROUTES)}"})
        assert request_counts(url, "/v1/predict") == {"200": 1} and request_counts(url, "/") == {"200": 1}
