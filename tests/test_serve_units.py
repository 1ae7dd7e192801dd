"""The serve parts without HTTP: micro-batching on a real predictor, request checks, the SQLite feedback
log and its label.csv export (read back by the dataset reader)."""
from __future__ import annotations

import base64
import math
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import edge_msa
from edge_msa.cli import main
from edge_msa.errors import ArtifactError, InputError
from edge_msa.serve.batching import MicroBatcher, QueueFull, Stopped
from edge_msa.serve.feedback import APPLICATION_ID, FeedbackLog, RecentPredictions, export_label_csv, split_of
from edge_msa.serve.inputs import Limits, RequestError, parse_item, parse_items

from conftest import SERVE_SPEC


class Counting:
    """Wraps predict_batch and records each call's batch size (the predictor itself is real)."""

    def __init__(self, predictor) -> None:
        self.predictor, self.sizes = predictor, []

    def __call__(self, items):
        self.sizes.append(len(items))
        return self.predictor.predict_batch(items)


@pytest.fixture(scope="module")
def predictor(media_bundle):
    with edge_msa.load(media_bundle) as p:
        yield p


def feats(m: str, rows: int = 2) -> np.ndarray:
    return np.ones((rows, SERVE_SPEC.dim(m)), np.float32)


def test_inputs_queued_together_run_as_one_call_up_to_max_batch(predictor):
    run = Counting(predictor)
    batcher = MicroBatcher(run, max_batch=4, max_wait_ms=50, max_queue=16)
    futures = batcher.submit([{"audio": feats("audio", i + 1)} for i in range(6)])  # queued before the worker starts
    batcher.start()
    results = [f.result(30) for f in futures]
    batcher.close()
    assert run.sizes == [4, 2] and all(r.ran == ["audio"] for r in results)
    solo = Counting(predictor)
    off = MicroBatcher(solo, max_batch=1, max_wait_ms=0, max_queue=8)
    futures = off.submit([{"audio": feats("audio")}] * 3)
    off.start()
    [f.result(30) for f in futures]
    off.close()
    assert solo.sizes == [1, 1, 1]


def test_queue_bound_refuses_all_or_nothing_and_a_bad_input_fails_alone(predictor):
    batcher = MicroBatcher(Counting(predictor), max_batch=2, max_wait_ms=0, max_queue=3)
    batcher.submit([{"audio": feats("audio")}] * 2)
    with pytest.raises(QueueFull) as info:
        batcher.submit([{"audio": feats("audio")}] * 2)  # 2 + 2 > 3: none of them is queued
    assert info.value.retry_after == 1 and batcher.depth == 2  # the 429 answers this line, with Retry-After: 1
    assert str(info.value) == ("server busy (2 inputs queued, 2 more would pass the limit of 3); expected a retry "
                               "after 1 s (the Retry-After header)")
    batcher.close()
    with pytest.raises(Stopped, match=r"^not serving: the server is shutting down; expected a retry after 1 s"):
        batcher.submit([{"audio": feats("audio")}])
    run = Counting(predictor)
    batcher = MicroBatcher(run, max_batch=4, max_wait_ms=0, max_queue=4)
    bad = {"video": Path("/nonexistent/clip.mp4")}  # the runtime raises InputError for this input
    first, broken, last = batcher.submit([{"audio": feats("audio")}, bad, {"text": "fine"}])
    batcher.start()
    assert first.result(30).ran == ["audio"] and last.result(30).ran == ["text"]
    with pytest.raises(InputError, match="video file not found"):
        broken.result(30)
    batcher.close()
    assert run.sizes == [3, 2]  # the failed batch, then the two good inputs again as one batch
    batcher = MicroBatcher(Counting(predictor), max_batch=4, max_wait_ms=0, max_queue=4)
    gone, kept = batcher.submit([{"text": "client left"}, {"text": "client stayed"}])
    assert gone.cancel()  # e.g. its request task was cancelled before the worker took it
    batcher.start()
    assert kept.result(30).ran == ["text"] and batcher.refusal is None
    batcher.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the worker's traceback
def test_a_dead_worker_refuses_inputs_and_answers_those_it_held_as_a_closed_one_does(media_bundle, tmp_path):
    """An error escaping the batch worker (a bug; here in on_batch, or a BaseException from the model call) left
    /healthz saying 503 while submit still queued inputs no one would run: their clients hung until their timeouts.
    Now submit refuses with the 503 /healthz answers, and the inputs the worker held or had queued get it too."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio

    from edge_msa.serve.app import ERROR_HANDLERS, Service, create_app
    from edge_msa.serve.config import ServeConfig

    class Fatal(BaseException):
        pass

    def fatal(items):
        raise Fatal()

    batcher = MicroBatcher(fatal, max_batch=1, max_wait_ms=0, max_queue=4)
    held, queued = batcher.submit([{"text": "held"}, {"text": "queued"}])
    batcher.start()
    for future in (held, queued):
        assert str(future.exception(30)).startswith("not serving: the batch worker stopped on Fatal (see the server "
                                                    "log); expected a retry after 1 s")
    service = Service(ServeConfig(bundle=str(media_bundle)))
    app = create_app(service)

    def metrics_bug(size, seconds):
        raise RuntimeError("a bug after the batch")
    service.batcher.on_batch = metrics_bug
    service.batcher.start()
    parsed = [parse_item({"text": "scored"}, SERVE_SPEC, Limits(), lambda: tmp_path)]
    assert asyncio.run(service.predict(parsed))[0]["ran"] == ["text"]  # answered; the worker died after
    service.batcher._thread.join(30)
    with pytest.raises(Stopped) as info:  # at once: it was queued and never answered
        asyncio.run(service.predict(parsed))
    answer = asyncio.run(dict(ERROR_HANDLERS)[Stopped](None, info.value))
    healthz = next(route.endpoint for route in app.routes if getattr(route, "path", "") == "/healthz")
    for response in (answer, asyncio.run(healthz())):
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.body == (b'{"error":"not serving: the batch worker stopped on RuntimeError (see the server '
                                 b'log); expected a retry after 1 s (the Retry-After header)"}')
    service.close()


def test_a_named_bad_input_fails_alone_and_the_rest_rerun_as_one_batch(predictor):
    """predict_batch names the bad input (ItemError): just that request fails, with the error it gets alone, and
    the others run again together (they ran one call each, a batch's worth of calls); an error that names no input
    still reruns them one by one."""
    items = [{"audio": feats("audio")}, {"video": Path("/nonexistent/a.mp4")}, {"text": "fine"},
             {"video": Path("/nonexistent/b.mp4")}, {"audio": feats("audio", 3)}]
    run = Counting(predictor)
    batcher = MicroBatcher(run, max_batch=8, max_wait_ms=0, max_queue=8)
    futures = batcher.submit(items)
    batcher.start()
    for item, future in zip(items, futures):
        if "video" in item:
            with pytest.raises(InputError) as alone:
                predictor.predict_batch([item])
            assert type(future.exception(30)) is InputError and str(future.exception()) == str(alone.value)
        else:
            assert future.result(30).score == predictor.predict_batch([item])[0].score
    batcher.close()
    assert run.sizes == [5, 4, 3]

    sizes = []

    def unnamed(batch):
        sizes.append(len(batch))
        if len(batch) > 1:
            raise InputError("something about the batch")
        return predictor.predict_batch(batch)
    batcher = MicroBatcher(unnamed, max_batch=2, max_wait_ms=0, max_queue=2)
    futures = batcher.submit([{"text": "a"}, {"text": "b"}])
    batcher.start()
    assert [f.result(30).ran for f in futures] == [["text"], ["text"]]
    batcher.close()
    assert sizes == [2, 1, 1]


def test_parse_item_checks_and_digests(tmp_path):
    limits = Limits(max_text_chars=10, max_steps=4)
    workdir = lambda: tmp_path  # noqa: E731
    a = parse_item({"text": "fine", "audio": feats("audio").tolist()}, SERVE_SPEC, limits, workdir)
    b = parse_item({"audio": feats("audio").tolist(), "text": "fine"}, SERVE_SPEC, limits, workdir)
    c = parse_item({"text": "fine!"}, SERVE_SPEC, limits, workdir)
    assert a.digest == b.digest != c.digest and a.text == "fine" and a.item["audio"].dtype == np.float32
    cases = [({"text": "x" * 11}, 413, "at most 10"), ({"audio": feats("audio", 5).tolist()}, 400, "L <= 4"),
             ({"video": [[0.0] * 105]}, 200, None), ({"audio": "UklGRg=="}, 415, "WAV, FLAC, OGG, MP3"),
             ({"text": None}, 400, "at least one"), ({"video": {"a": 1}}, 400, "expected an (L, d) array"),
             ({"audio": [[10 ** 400] * 56]}, 400, "beyond float32"),  # was a 500: numpy's OverflowError
             ({"audio": [[True] * 56]}, 400, "hold true/false"), ({"audio": [["1"] * 56]}, 400, "hold strings")]
    for obj, status, words in cases:
        if status == 200:
            assert parse_item(obj, SERVE_SPEC, limits, workdir).item["video"].shape == (1, 105)
            continue
        with pytest.raises(RequestError) as info:
            parse_item(obj, SERVE_SPEC, limits, workdir)
        assert info.value.status == status and words in info.value.message and "\n" not in info.value.message
    assert parse_item({"video": [[0] * 105]}, SERVE_SPEC, limits, workdir).item["video"].dtype == np.float32  # ints


def test_non_finite_features_are_told_as_the_runtime_tells_them(tmp_path):
    """JSON NaN / Infinity (Python's json reads them) were refused as "audio features contain NaN, Inf or values
    beyond float32; expected finite values": the service's own second wording of the runtime's check, saying neither
    how many nor where. It answers the runtime's line now, a 400 as for every other refused value."""
    audio = feats("audio", 3).tolist()
    audio[1][2], audio[2][0] = float("nan"), float("inf")
    with pytest.raises(RequestError) as info:
        parse_item({"audio": audio}, SERVE_SPEC, Limits(), lambda: tmp_path)
    assert (info.value.status, info.value.message) == (400, "audio features hold 2 of 168 values that are not finite "
                                                            "(NaN or inf), the first at step 1, feature 2; expected "
                                                            "finite numbers")
    for past in (1e39, 10 ** 400):  # past float32, and past float64 too (a JSON integer): it had a wording of its own
        with pytest.raises(RequestError) as info:
            parse_item({"audio": [[past] * 56]}, SERVE_SPEC, Limits(), lambda: tmp_path)
        assert (info.value.status, info.value.message) == (400, "audio features hold values beyond float32's range "
                                                                "(|x| > 3.403e+38); expected finite float32 values")


def test_token_ids_outside_the_vocabulary_answer_400_in_one_line(token_bundle, tmp_path):
    """A token-id bundle's JSON ids that its vocabulary lacks pass parse_item ((L, 1) numbers) and are refused by the
    runtime inside the batch: a 400 with its line, not onnxruntime's Gather error as a 500."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio

    from edge_msa.serve.app import Service
    from edge_msa.serve.config import ServeConfig

    service = Service(ServeConfig(bundle=str(token_bundle)))
    service.batcher.start()
    try:
        vocab = service.predictor.text_encoder.vocab_size
        for bad in (-1, vocab):
            parsed = [parse_item({"text": [[2], [bad], [3]]}, service.spec, Limits(), lambda: tmp_path)]
            with pytest.raises(RequestError) as info:
                asyncio.run(service.predict(parsed))
            assert (info.value.status, info.value.message) == (
                400, f"text token ids must be whole numbers in [0, {vocab}) for this bundle's tokenizer; got values "
                     f"in [{min(2, bad)}, {max(3, bad)}]")
    finally:
        service.close()


def test_a_bad_input_of_a_batch_request_is_named(tmp_path):
    """/v1/predict/batch answered "text is empty" or "audio features have shape (1, 1) ..." without saying which of
    its (up to 64) inputs was meant, while the runtime's refusals of a batch say "input #1: ..."."""
    limits, workdir = Limits(max_text_chars=10), lambda: tmp_path
    for bad, words in [({"text": " "}, "empty text"), ({"audio": [[1.0]]}, "audio features have shape (1, 1)"),
                       (3, "input is int"), ({"txt": "a"}, "input has unknown fields ['txt']")]:
        with pytest.raises(RequestError) as info:
            parse_items([{"text": "fine"}, bad], SERVE_SPEC, limits, workdir, many=True)
        assert info.value.status == 400 and info.value.message.startswith(f"input #1: {words}"), info.value.message
        with pytest.raises(RequestError) as info:  # one input, as /v1/predict takes it: nothing to tell apart
            parse_items([bad], SERVE_SPEC, limits, workdir, many=False)
        assert info.value.message.startswith(words), info.value.message


def test_text_not_in_utf8_is_refused_alike_in_a_form_and_in_json():
    """A form's text field in another encoding (a Windows client's cp1252 "café") was decoded by starlette as latin-1
    and the result scored with a 200, where the same text in a JSON body answered 400: both are the same 400 now."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio

    from starlette.requests import Request

    from edge_msa.serve.app import multipart_item, parse_json

    def form(text: bytes, params: str = "") -> dict:
        body = b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\n' + text + b"\r\n--b--\r\n"
        scope = {"type": "http", "headers": [(b"content-type", f"multipart/form-data; {params}boundary=b".encode())]}
        return asyncio.run(multipart_item(Request(scope), body, Limits()))

    cp1252 = "café au lait".encode("cp1252")
    for parse, expected in [(form, "form field 'text' is not valid UTF-8 (invalid continuation byte at byte 3)"),
                            (lambda t: parse_json(b'{"text": "' + t + b'"}'),
                             "JSON body is not valid UTF-8 (invalid continuation byte at byte 13)")]:
        with pytest.raises(RequestError) as info:
            parse(cp1252)
        assert (info.value.status, info.value.message) == (400, f"{expected}; expected UTF-8 text")
    assert form("café au lait".encode()) == {"text": "café au lait"}
    assert form(cp1252, "charset=cp1252; ") == {"text": "café au lait"}  # a charset the client declares is taken


def test_a_batch_body_of_the_wrong_shape_is_told_what_it_was():
    """/v1/predict/batch answered 65 inputs, none, a list body or "inputs": 3 alike, with what was expected only."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    from edge_msa.serve.app import batch_items

    expected = 'expected {"inputs": [...]} with 1 to 64 inputs'
    for body, got in [({"inputs": [{"text": "a"}] * 65}, "batch has 65 inputs"), ({"inputs": []}, "batch has 0 inputs"),
                      ([{"text": "a"}], "batch body is list"), ({"input": []}, 'batch body has no "inputs"'),
                      ({"inputs": 3}, "inputs is int")]:
        with pytest.raises(RequestError) as info:
            batch_items(body, 64)
        assert info.value.status == 400 and info.value.message == f"{got}; {expected}"
    assert batch_items({"inputs": [{"text": "a"}] * 64}, 64) == [{"text": "a"}] * 64


def encode(path: Path, seconds: float, video: str | None = None, audio: str | None = None,
           audio_seconds: float | None = None, **options: str) -> bytes:
    """A real clip written with PyAV: `video` / `audio` codecs (either may be None), a 64x48 picture, a 440 Hz tone
    (of `audio_seconds`, if given)."""
    av = pytest.importorskip("av", reason="PyAV writes the clips (pip install 'edge-msa[media]')")
    rate, fps = 16000, 10
    with av.open(str(path), "w", options=options) as out:
        streams = []
        if video:
            vs = out.add_stream(video, rate=fps)
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
            frames = [av.VideoFrame.from_ndarray(np.full((48, 64, 3), 9 * i % 256, np.uint8), format="rgb24")
                      for i in range(int(seconds * fps))]
            streams.append((vs, frames))
        if audio:
            aus = out.add_stream(audio, rate=rate)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int((audio_seconds or seconds) * rate)) / rate)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(tone[None, :], format="flt", layout="mono")
            frame.sample_rate = rate
            streams.append((aus, [frame]))
        for stream, frames in streams:
            for f in [*frames, None]:
                out.mux(stream.encode(f))
    return path.read_bytes()


def test_browser_recordings_mp3_and_streamed_flac_uploads_are_measured_not_refused(tmp_path):
    """A browser's MediaRecorder WebM has no duration in its header: the video answered 400 "cannot tell how long" and
    its audio 415, as did MP3 and a phone's M4A (the CLI reads all of them); a FLAC written as a stream (length
    unknown) answered 413 "lasts 576460752303423.5 s". Now PyAV reads the packet timestamps where the header is silent."""
    sf = pytest.importorskip("soundfile")
    workdir, limits = (lambda: tmp_path / "work"), Limits(max_media_seconds=5)
    (tmp_path / "work").mkdir()
    webm = encode(tmp_path / "rec.webm", 2, video="libvpx", audio="libopus", live="1")  # as MediaRecorder writes
    for m, data in [("video", webm), ("audio", webm), ("audio", encode(tmp_path / "a.mp3", 2, audio="mp3")),
                    ("audio", encode(tmp_path / "a.m4a", 2, audio="aac"))]:
        assert parse_item({m: data}, SERVE_SPEC, limits, workdir).item[m].is_file()
    sf.write(tmp_path / "long.flac", np.zeros(16000 * 9, np.float32), 16000)  # 9 s: over the 5 s limit
    sf.write(tmp_path / "short.flac", np.zeros(16000 * 2, np.float32), 16000)
    for name, status in [("short", None), ("long", 413)]:
        data = bytearray((tmp_path / f"{name}.flac").read_bytes())
        data[21] &= 0xF0  # STREAMINFO total samples = 0: "unknown", as a streaming encoder writes it
        data[22:26] = bytes(4)
        if status is None:
            assert parse_item({"audio": bytes(data)}, SERVE_SPEC, limits, workdir).item["audio"].is_file()
            continue
        with pytest.raises(RequestError) as info:
            parse_item({"audio": bytes(data)}, SERVE_SPEC, limits, workdir)
        assert info.value.status == 413 and "lasts 5." in info.value.message  # measured up to just past the limit


def test_media_uploads_without_content_are_refused_before_the_batch(tmp_path):
    """A WAV holding no samples passed the checks and failed inside the batch, naming the server's scratch path;
    so would a video without an audio track sent as audio, now that containers are taken as audio."""
    sf = pytest.importorskip("soundfile")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    cases = [({"audio": (tmp_path / "empty.wav").read_bytes()}, "audio holds no samples"),
             ({"audio": encode(tmp_path / "silent.mp4", 1, video="mpeg4")}, "audio (MP4) has no audio track")]
    for obj, words in cases:
        with pytest.raises(RequestError) as info:
            parse_item(obj, SERVE_SPEC, Limits(), lambda: tmp_path)
        assert info.value.status == 400 and words in info.value.message and str(tmp_path) not in info.value.message


def test_an_upload_the_temp_folder_cannot_take_is_a_503_not_a_500(tmp_path, monkeypatch):
    """A device's temp folder full or read-only: writing the upload (the multipart parser's spool of a file past
    1 MiB, the request's scratch folder, its media file) raised an OSError, answered 500 "internal error (OSError)"
    with a traceback. It is a 503 with Retry-After, naming the cause but not the server's folder (the log does)."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio
    import errno
    import os
    import tempfile

    from starlette.requests import Request

    from edge_msa.serve.app import Scratch, multipart_item

    def refuse(code: int):
        def write(*args, **kwargs):
            raise OSError(code, os.strerror(code), str(tmp_path / "x"))
        return write

    wav = b"RIFF\0\0\0\0WAVE" + bytes(16)
    body = (b'--b\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n' + wav + bytes(2**20)
            + b"\r\n--b--\r\n")
    scope = {"type": "http", "headers": [(b"content-type", b"multipart/form-data; boundary=b")]}
    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", refuse(errno.ENOSPC))
    monkeypatch.setattr(Path, "write_bytes", refuse(errno.ENOSPC))
    monkeypatch.setattr(tempfile, "mkdtemp", refuse(errno.EROFS))
    calls = [lambda: asyncio.run(multipart_item(Request(scope), body, Limits())),
             lambda: parse_item({"audio": wav}, SERVE_SPEC, Limits(), lambda: tmp_path),
             lambda: parse_item({"audio": wav}, SERVE_SPEC, Limits(), Scratch())]
    for call, why in zip(calls, ["No space left on device", "No space left on device", "Read-only file system"]):
        with pytest.warns(UserWarning, match=f"the temp folder .* refused the write .*{why}"):
            with pytest.raises(RequestError) as info:
                call()
        assert (info.value.status, info.value.headers) == (503, {"Retry-After": "1"})
        assert info.value.message == (f"the server cannot store media uploads now ({why} in its temp folder); "
                                      "expected a retry once it can (the Retry-After header), or the request "
                                      "without media")


def test_audio_shorter_than_one_frame_is_refused_before_the_batch(tmp_path):
    """A WAV of a few ms passed parse_item and was refused by the front end inside the batch, which cost its
    batch-mates a second run; its header's length tells it before, in the front end's own words."""
    sf = pytest.importorskip("soundfile")
    from edge_msa.features.audio import AudioFrontEnd

    (tmp_path / "work").mkdir()
    for rate, samples, ms in [(16000, 160, "10.0"), (8000, 100, "12.5")]:
        sf.write(tmp_path / "short.wav", np.full(samples, 0.1, np.float32), rate)
        data = (tmp_path / "short.wav").read_bytes()
        with pytest.raises(RequestError) as info:
            parse_item({"audio": data}, SERVE_SPEC, Limits(), lambda: tmp_path / "work")
        expected = f"audio is {ms} ms long; expected at least 25 ms (one frame)"
        assert (info.value.status, info.value.message) == (400, expected)
        with pytest.raises(InputError, match=re.escape(expected)):  # the same rule, in the same words
            AudioFrontEnd()(tmp_path / "short.wav")
    sf.write(tmp_path / "frame.wav", np.full(200, 0.1, np.float32), 8000)  # 25 ms: one frame
    item = parse_item({"audio": (tmp_path / "frame.wav").read_bytes()}, SERVE_SPEC, Limits(), lambda: tmp_path / "work")
    assert AudioFrontEnd()(item.item["audio"]).shape[0] == 1


def test_audio_in_a_container_is_opened_once_to_check_its_track_and_length(tmp_path, monkeypatch):
    """An MP4 upload as audio was opened by PyAV twice before the batch: once for its audio track, once for its
    length. One open now answers both, the track check included (a silent MP4 as audio is still a 400)."""
    encoded = {name: encode(tmp_path / f"{name}.mp4", 1, video="mpeg4", audio=audio)
               for name, audio in (("voiced", "aac"), ("silent", None))}
    import av

    opened, real = [], av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    assert parse_item({"audio": encoded["voiced"]}, SERVE_SPEC, Limits(), lambda: tmp_path).item["audio"].is_file()
    assert len(opened) == 1
    with pytest.raises(RequestError) as info:
        parse_item({"audio": encoded["silent"]}, SERVE_SPEC, Limits(), lambda: tmp_path)
    assert info.value.status == 400 and "audio (MP4) has no audio track" in info.value.message
    assert len(opened) == 2


def test_audio_in_a_container_is_measured_by_its_audio_track_not_the_container(tmp_path):
    """An MP4 / MKV sent as audio was measured by the container, whose length is its longest stream's: 2 s of audio
    in a 40 s video answered 413 "audio lasts 40.0 s" though the front end decodes only the track, and 10 ms of audio
    in a 5 s clip passed, to be refused by the front end inside the batch. The track's packets tell both."""
    cases = {"talk.mp4": (40, "aac", 2.0), "blip.mkv": (5, "pcm_s16le", 0.01), "speech.mp4": (1, "aac", 40.0)}
    data = {name: encode(tmp_path / name, seconds, video="mpeg4", audio=codec, audio_seconds=audio)
            for name, (seconds, codec, audio) in cases.items()}
    (tmp_path / "work").mkdir()
    answers = {}
    for name, upload in data.items():
        try:
            answers[name] = parse_item({"audio": upload}, SERVE_SPEC, Limits(), lambda: tmp_path / "work").item
        except RequestError as exc:
            answers[name] = (exc.status, exc.message)
    assert answers["talk.mp4"]["audio"].suffix == ".mp4"  # scored
    assert answers["blip.mkv"] == (400, "audio is 10.0 ms long; expected at least 25 ms (one frame)")
    status, message = answers["speech.mp4"]  # a long track is refused as before, measured just past the limit
    assert status == 413 and re.fullmatch(r"audio lasts 30\.\d+ s; expected at most 30 s", message), message


def test_a_one_frame_video_upload_is_refused_before_the_batch(tmp_path):
    """A 1-frame MP4 passed the format and duration checks and failed only inside the batch, where the gate might
    not run video at all; it is a 400 at parsing now, as `predict` refuses a still image before the gate."""
    one = encode(tmp_path / "one.mp4", 0.1, video="mpeg4")  # 1 frame at 10 fps
    with pytest.raises(RequestError) as info:
        parse_item({"video": one}, SERVE_SPEC, Limits(), lambda: tmp_path)
    assert info.value.status == 400 and info.value.message.startswith("video is a still image (1 frame); expected")
    two = encode(tmp_path / "two.mp4", 0.2, video="mpeg4")
    assert parse_item({"video": two}, SERVE_SPEC, Limits(), lambda: tmp_path).item["video"].is_file()


def test_a_video_upload_whose_audio_track_is_too_short_is_refused_before_the_batch(tmp_path):
    """A video of 1 s with 10 ms of audio passed parse_item (the video is long enough) and the audio front end, which
    reads the track of a video given without audio, refused it inside the batch: its batch-mates ran again. Its
    track is checked here now, by the rule an audio upload's length is, in the front end's words."""
    from edge_msa.features.audio import AudioFrontEnd

    clips = {ms: encode(tmp_path / f"{ms}.avi", 1, video="mpeg4", audio="pcm_s16le", audio_seconds=ms / 1000)
             for ms in (10, 25)}  # PCM: exactly that many samples (AAC pads to whole 1024-sample frames)
    expected = "audio is 10.0 ms long; expected at least 25 ms (one frame)"
    with pytest.raises(RequestError) as info:
        parse_item({"video": clips[10]}, SERVE_SPEC, Limits(), lambda: tmp_path)
    assert (info.value.status, info.value.message) == (400, f"the video's {expected}")
    with pytest.raises(InputError, match=re.escape(expected)):  # the same rule, in the same words
        AudioFrontEnd()(tmp_path / "10.avi")
    for obj in ({"video": clips[25]}, {"video": clips[10], "audio": feats("audio").tolist()}):  # one frame; own audio
        assert parse_item(obj, SERVE_SPEC, Limits(), lambda: tmp_path).item["video"].is_file()


@pytest.mark.parametrize("m, module, head", [("audio", "soundfile", b"RIFF\0\0\0\0WAVE"),
                                             ("video", "cv2", b"FLV\x01")])
def test_media_upload_without_the_media_extra_is_a_503_naming_the_fix(tmp_path, monkeypatch, m, module, head):
    """A server installed with [serve] but not [media] answered a media upload with 500 (ModuleNotFoundError)."""
    monkeypatch.setitem(sys.modules, module, None)  # import -> ImportError
    data = base64.b64encode(head + b"\0" * 64).decode()
    with pytest.raises(RequestError) as info:
        parse_item({m: data}, SERVE_SPEC, Limits(), lambda: tmp_path)
    assert info.value.status == 503 and "\n" not in info.value.message
    assert info.value.message.startswith(f"{module} is required for {m} uploads")
    assert info.value.message.endswith('fix: pip install "edge-msa[media]"')


@pytest.mark.filterwarnings("ignore:1 of 2 texts are longer")  # the runtime's batch-level warning (server log)
def test_a_truncated_text_is_named_in_the_answer(media_bundle, tmp_path):
    """A text cut to the encoder's max length answered 200 with no hint; the warning went to the server log only.
    The answer tells it from the prediction's one tokenization (each text was tokenized again to tell it)."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio

    from edge_msa.serve.app import Service
    from edge_msa.serve.config import ServeConfig

    class Counting:  # the tokenizer, counting the texts it tokenizes
        def __init__(self, tokenizer):
            self.tokenizer, self.texts = tokenizer, 0

        def encode_batch(self, texts):
            self.texts += len(texts)
            return self.tokenizer.encode_batch(texts)

        def encode(self, text):
            self.texts += 1
            return self.tokenizer.encode(text)

    service = Service(ServeConfig(bundle=str(media_bundle)))
    counting = service.predictor.text_encoder._tokenizer = Counting(service.predictor.text_encoder.tokenizer)
    service.batcher.start()
    try:
        texts = ("a fine film", " ".join(["good"] * 40))  # max_len 16 tokens
        parsed = [parse_item({"text": t}, SERVE_SPEC, Limits(), lambda: tmp_path) for t in texts]
        short, long = asyncio.run(service.predict(parsed))
    finally:
        service.close()
    assert short["warnings"] == [] and long["warnings"] == [
        "text is longer than 16 tokens and was truncated; only its first 16 were scored"]
    assert counting.texts == len(texts)


def test_a_score_that_is_no_number_is_a_500_not_a_neutral_answer(media_bundle, tmp_path, monkeypatch):
    """A broken model (a NaN weight exports and loads) was answered 200 with score null (the JSON writer's NaN) and
    polarity "neutral": a client read a neutral sentence, /v1/feedback could label it, and /openapi.json says score
    is a number. It is a 500 with one line now, the published 500 answer, and the prediction is neither counted nor
    kept for feedback."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio

    from edge_msa.serve.app import Service, create_app
    from edge_msa.serve.config import ServeConfig
    from edge_msa.serve.inputs import RequestError

    service = Service(ServeConfig(bundle=str(media_bundle)))
    fuse = service.predictor.backends["fuse"]
    run = fuse.run
    monkeypatch.setattr(fuse, "run", lambda feed: {k: np.full_like(v, np.nan) for k, v in run(feed).items()})
    service.batcher.start()
    try:
        with pytest.raises(RequestError) as refused:
            asyncio.run(service.predict([parse_item({"text": "a fine film"}, SERVE_SPEC, Limits(), lambda: tmp_path)]))
        responses = create_app(service).openapi()["paths"]["/v1/predict"]["post"]["responses"]
    finally:
        service.close()
    assert refused.value.status == 500 and refused.value.message == (
        "the model scored nan (a broken bundle: NaN or infinite weights); expected a bundle whose model scores "
        "finite numbers (export it again from a sound checkpoint)")
    assert not service.recent._items and sum(service.metrics._counts.values()) == 0
    assert responses["500"]["content"]["application/json"]["schema"]["required"] == ["error"]


def test_a_score_that_is_no_number_for_one_input_fails_only_its_request(media_bundle, tmp_path):
    """The predictor checks a batch's scores together: a NaN that only one client's input reaches (an overflow on
    its values) raised BrokenModel for the whole micro-batch, and the other client got a 500 for an input that was
    not its own. The batch reruns one input at a time then: only the offending request is the 500."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio

    from edge_msa.runtime.predictor import BrokenModel
    from edge_msa.serve.app import Service
    from edge_msa.serve.config import ServeConfig

    service = Service(ServeConfig(bundle=str(media_bundle), max_wait_ms=200))
    sizes = []

    def poisoned(items):
        sizes.append(len(items))
        if any(item.get("text") == "overflows" for item in items):
            raise BrokenModel("in memory", "the model scored nan")
        return service.predictor.predict_batch(items)
    service.batcher.run_batch = poisoned
    fine, bad = (parse_item({"text": t}, SERVE_SPEC, Limits(), lambda: tmp_path) for t in ("a fine film", "overflows"))

    async def two_clients():
        service.start()
        return await asyncio.gather(service.predict([fine]), service.predict([bad]), return_exceptions=True)
    try:
        answered, refused = asyncio.run(two_clients())
    finally:
        service.close()
    assert sizes == [2, 1, 1]  # one micro-batch, then each input alone
    assert answered[0]["ran"] == ["text"]
    assert isinstance(refused, RequestError) and (refused.status, refused.message) == (500, "the model scored nan")


def test_serve_refuses_to_start_on_a_bundle_that_scores_no_number(media_bundle, tmp_path, monkeypatch, capsys):
    """A broken bundle (a NaN weight exports and loads) was served: /healthz answered 200 and every prediction a 500,
    seen only on /metrics, so a kiosk's operator learnt nothing. The warm-up prediction refuses it now, with one line
    and exit code 2 before any port is bound, and the service it loaded is closed."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    from edge_msa.cli import serve as serve_cli
    from edge_msa.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from edge_msa.serve.app import Service

    run = OnnxRuntimeBackend.run
    monkeypatch.setattr(OnnxRuntimeBackend, "run", lambda self, feed: {
        k: np.full_like(v, np.nan) if self.label == "fuse" else v for k, v in run(self, feed).items()})
    monkeypatch.setattr(serve_cli, "listen", lambda *a: pytest.fail("a broken bundle was served"))
    closed = []
    monkeypatch.setattr(Service, "close", lambda self: closed.append(self))
    assert main(["serve", str(media_bundle), "--feedback", str(tmp_path / "log.sqlite")]) == 2
    assert capsys.readouterr().err == (
        f"error: bundle '{media_bundle}': the model scored nan (a broken bundle: NaN or infinite weights); expected a "
        "bundle whose model scores finite numbers (export it again from a sound checkpoint)\n")
    assert len(closed) == 1


def test_a_request_during_shutdown_is_the_503_healthz_answers(media_bundle, tmp_path):
    """A prediction arriving once the drain began was answered 429 "server busy (shutting down)", "too many requests"
    from a server that is going away, while /healthz said 503: both answer the same 503 with Retry-After now."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio

    from edge_msa.serve.app import ERROR_HANDLERS, Service, create_app
    from edge_msa.serve.config import ServeConfig

    service = Service(ServeConfig(bundle=str(media_bundle)))
    app = create_app(service)
    service.start()  # what the lifespan does before serving,
    service.close()  # and once uvicorn stops taking connections
    parsed = [parse_item({"text": "too late"}, SERVE_SPEC, Limits(), lambda: tmp_path)]
    with pytest.raises(Exception) as info:
        asyncio.run(service.predict(parsed))
    answer = asyncio.run(dict(ERROR_HANDLERS)[type(info.value)](None, info.value))
    healthz = next(route.endpoint for route in app.routes if getattr(route, "path", "") == "/healthz")
    probe = asyncio.run(healthz())
    for response in (answer, probe):
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.body == (b'{"error":"not serving: the server is shutting down; expected a retry after 1 s '
                                 b'(the Retry-After header)"}')


def test_the_routes_declare_no_parameters_so_fastapi_validates_nothing(media_bundle):
    """The app's RequestValidationError handler could not fire and was removed: FastAPI validates only what a route
    declares, and every route reads the raw request. A route declaring one would answer FastAPI's 422 {"detail": ..},
    not one `error:` line: this says so before a client sees it. Nor has a route a response_model: FastAPI would
    validate and re-serialise each answer through pydantic (inf and NaN written as null); the schema's answers are
    declared as `responses` (serve.openapi.answer)."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    from fastapi.routing import APIRoute

    from edge_msa.serve.app import Service, create_app
    from edge_msa.serve.config import ServeConfig

    service = Service(ServeConfig(bundle=str(media_bundle)))
    routes = [route for route in create_app(service).routes if isinstance(route, APIRoute)]
    service.close()
    assert {route.path for route in routes} == {"/", "/healthz", "/metrics", "/v1/info", "/v1/predict",
                                                "/v1/predict/batch", "/v1/feedback"}
    for route in routes:
        d = route.dependant
        assert not (d.path_params or d.query_params or d.header_params or d.cookie_params or d.body_params
                    or d.dependencies or route.response_field), route.path


def test_the_demo_page_calls_the_post_routes_of_the_app_it_is_served_by(media_bundle):
    """The page kept its own "/v1/predict" and "/v1/feedback" beside the app's routes: a route renamed in one place
    would have left the page calling a 404. Its calls are the routes the app registers, under the prefix it is given."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import json

    from fastapi.routing import APIRoute

    from edge_msa.serve.app import Service, create_app
    from edge_msa.serve.config import ServeConfig
    from edge_msa.serve.demo import page

    service = Service(ServeConfig(bundle=str(media_bundle)))
    routes = [route for route in create_app(service).routes if isinstance(route, APIRoute)]
    posts = {route.path for route in routes if "POST" in route.methods}
    service.close()

    def calls(root: str) -> dict[str, str]:
        html = page(root)
        # its only paths are those it is given, called once each
        assert html.count("call(API.predict, {") == html.count("call(API.feedback, {") == 1 == html.count("/v1/") - 1
        return json.loads(re.search(r"const API = (\{.*?\});", html).group(1))

    assert calls("") == {"predict": "/v1/predict", "feedback": "/v1/feedback"} and set(calls("").values()) <= posts
    assert calls("/msa") == {"predict": "/msa/v1/predict", "feedback": "/msa/v1/feedback"}


def test_metrics_count_a_request_by_the_route_that_answered_it_whatever_the_root_path(media_bundle):
    """/metrics stripped root_path from the path as a string, the router by path segments (starlette's rule): where
    the server leaves the prefix out of the path (starlette's TestClient, FastAPI's root_path), root_path /m made a
    200 of /metrics count as "etrics", i.e. "other". The count reads the route as the router does now
    (openapi.route_path), beside the helper that puts the prefix before the page's calls (openapi.public_path)."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio

    from prometheus_client.parser import text_string_to_metric_families
    from test_jsonio import get

    from edge_msa.serve.app import Service, create_app
    from edge_msa.serve.config import ServeConfig

    service = Service(ServeConfig(bundle=str(media_bundle)))
    app = create_app(service)
    try:
        answers = [asyncio.run(get(app, path, root_path="/m")) for path in ("/metrics", "/", "/nope", "/metrics")]
    finally:
        service.close()
    assert [status for status, _ in answers] == [200, 200, 404, 200] and '"/m/v1/predict"' in answers[1][1]
    counted = {(s.labels["path"], s.labels["code"]): s.value for f in text_string_to_metric_families(answers[3][1])
               if f.name == "edge_msa_http_requests" for s in f.samples if s.name.endswith("_total")}
    assert counted == {("/metrics", "200"): 1, ("/", "200"): 1, ("other", "404"): 1}


@pytest.mark.filterwarnings("ignore:audio")  # the runtime's word on a video without an audio track (server log)
def test_a_skipped_reason_names_the_upload_not_the_server_scratch_file(media_bundle, tmp_path):
    """A video upload without an audio track answered skipped {"audio": "video0.mp4 has no audio track"}: a file
    name the server gave its scratch copy, which the client never sent. The reason names the field now."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio

    from edge_msa.serve.app import Service
    from edge_msa.serve.config import ServeConfig

    silent = encode(tmp_path / "silent.mp4", 1, video="mpeg4")
    service = Service(ServeConfig(bundle=str(media_bundle)))
    service.batcher.start()
    try:
        parsed = parse_items([{"text": "fine"}, {"video": silent}], SERVE_SPEC, Limits(), lambda: tmp_path, True)
        answers = asyncio.run(service.predict(parsed))
    finally:
        service.close()
    assert answers[1]["skipped"]["audio"] == "the video upload has no audio track"


def test_info_and_healthz_show_no_path_of_the_exporting_or_serving_machine(media_bundle, tmp_path):
    """/v1/info showed clients the manifest's export_options.checkpoint / .data, data.path and the parity inputs
    naming the data file, all absolute paths of the machine that exported the bundle (user names, folder layout),
    and the bundle's resolved path on the server (/healthz its path as given). A client sees the bundle's name, the
    data file's name where the parity inputs quote it, and the lineage hashes; `edge-msa info` keeps the paths."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio
    import json

    from edge_msa.serve.app import Service, create_app
    from edge_msa.serve.config import ServeConfig

    service = Service(ServeConfig(bundle=str(media_bundle)))
    data = "/home/alice/private/mosi_utterance_std.npz"
    m = service.manifest
    m.export_options.update(checkpoint="/home/alice/runs/student.pt", data=data)
    m.data = {"path": data, "format": "mosi-u", "sha256": "ab" * 32, "splits": {"train": {"n": 3}}}
    quoted = f"all 3 validation samples of {data}"
    m.parity.update(inputs=quoted, int8={"inputs": quoted})
    healthz = next(route.endpoint for route in create_app(service).routes if getattr(route, "path", "") == "/healthz")
    service.start()  # as the lifespan does: /healthz answers for a running batch worker
    shown = json.dumps([service.info(), asyncio.run(healthz())])
    service.close()
    assert "/home/alice" not in shown and str(media_bundle.parent) not in shown
    info = service.info()["manifest"]
    assert "checkpoint" not in info["export_options"] and "data" not in info["export_options"]
    assert info["data"] == {"format": "mosi-u", "sha256": "ab" * 32, "splits": {"train": {"n": 3}}}
    assert info["parity"]["int8"]["inputs"] == "all 3 validation samples of mosi_utterance_std.npz"
    assert service.info()["bundle"] == media_bundle.name and m.export_options["data"] == data  # the manifest is kept


def test_a_body_is_held_once_while_read():
    """read_body kept a body's chunks and joined them at the end, so each large request briefly held its bytes
    twice (16 MiB at the default --max-body); it grows one buffer now: the peak is the body, not two."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio
    import tracemalloc

    from starlette.requests import Request

    from edge_msa.serve.app import read_body

    limit, chunk = 2**21, 2**16

    async def read() -> int:
        chunks = iter(range(limit // chunk))

        async def receive():
            more = next(chunks, None) is not None
            return {"type": "http.request", "body": b"x" * chunk if more else b"", "more_body": more}
        return len(await read_body(Request({"type": "http", "headers": []}, receive), Limits(max_body_bytes=limit)))

    tracemalloc.start()
    try:
        assert asyncio.run(read()) == limit
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * limit, f"peak {peak / 2**20:.1f} MiB for a {limit / 2**20:.0f} MiB body"


def test_large_json_bodies_are_parsed_one_at_a_time_so_memory_is_one_parse_not_one_per_request(media_bundle):
    """JSON numbers take ~10x their text as Python objects, and --max-steps can refuse them only once parsed: each
    large body was parsed on the event loop and its objects held while its arrays were checked in a thread, so N
    concurrent 8 MiB bodies of feature rows peaked at N x ~80 MiB (641 MiB more RSS for 8 of them, 154 MiB now), and
    an idle thread pool worker kept the last refusal it raised, whose frames held the parsed body. Bodies above
    OFFLOAD_BYTES are parsed one at a time: 4 concurrent ones peak as one does, and nothing holds them after."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio
    import tracemalloc

    from starlette.requests import Request

    from edge_msa.serve.app import Scratch, Service, parse_request
    from edge_msa.serve.config import ServeConfig

    row = "[" + ", ".join(["0.0"] * SERVE_SPEC.dim("audio")) + "]"
    body = ('{"audio": [' + ", ".join([row] * (2**20 // len(row))) + "]}").encode()  # 1 MiB, past --max-steps

    def request() -> Request:
        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}
        return Request({"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]}, receive)

    async def answer() -> tuple[int, str]:  # as the route's error handler does, letting go of the error at once
        try:
            await parse_request(request(), service, Scratch(), False)
        except RequestError as exc:
            return exc.status, exc.message[:25]
        return 200, ""

    async def parse(n: int) -> list:
        service.large_parse = asyncio.Semaphore(1)  # as Service.start makes it, on the running loop
        return await asyncio.gather(*(answer() for _ in range(n)))

    service = Service(ServeConfig(bundle=str(media_bundle)))
    peaks = []
    try:
        for n in (1, 4):
            tracemalloc.start()
            answers = asyncio.run(parse(n))
            held, peak = tracemalloc.get_traced_memory()
            peaks.append(peak)
            tracemalloc.stop()
            assert answers == [(400, "audio features have shape")] * n
            assert held < peaks[0] / 4, (held, peaks)  # the idle thread pool holds no refused body
    finally:
        service.close()
    assert peaks[1] < 1.5 * peaks[0], peaks


def test_feedback_the_log_cannot_take_is_a_503_not_a_500(media_bundle, tmp_path):
    """sqlite3's 'database is locked' (another writer on the same log, e.g. a second service) escaped as a 500
    "internal error (OperationalError)" after a 5 s wait; the client could not tell it to retry."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio

    from edge_msa.serve.app import Service
    from edge_msa.serve.config import ServeConfig

    log = tmp_path / "fb.sqlite"
    service = Service(ServeConfig(bundle=str(media_bundle), feedback=str(log)))
    service.log._db.execute("PRAGMA busy_timeout=50")  # sqlite3 waits 5 s by default: keep the test fast
    service.recent.put("r1", "digest", "a fine film", {"score": 0.1})
    other = sqlite3.connect(log, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    try:
        with pytest.raises(RequestError) as info:
            asyncio.run(service.add_feedback("r1", 1.0))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert info.value.status == 503 and info.value.headers == {"Retry-After": "1"}
    assert info.value.message.startswith("feedback not saved: the log refused the write (database is locked); "
                                         "expected a retry")
    assert asyncio.run(service.add_feedback("r1", 1.0)) == 1  # nothing half-written: the retry is the first row
    service.close()


def test_feedback_for_an_id_the_service_never_served_is_a_404(media_bundle, tmp_path):
    """The end-to-end battery's server runs without --feedback, so there every feedback call is "feedback is off";
    the unknown-id answer of a service that logs feedback is checked here, and that it writes nothing."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import asyncio

    from edge_msa.serve.app import Service
    from edge_msa.serve.config import ServeConfig

    log = tmp_path / "fb.sqlite"
    service = Service(ServeConfig(bundle=str(media_bundle), feedback=str(log)))
    try:
        with pytest.raises(RequestError) as info:
            asyncio.run(service.add_feedback("nope", 1.0))
    finally:
        service.close()
    assert info.value.status == 404 and info.value.message.startswith("request_id 'nope' is unknown (or older than "
                                                                      "the last 10000 predictions); expected an id")
    assert sqlite3.connect(log).execute("SELECT COUNT(*) FROM feedback").fetchone() == (0,)


def test_feedback_log_export_reads_back_as_an_mmsa_label_csv(tmp_path, capsys):
    from edge_msa.data.label_csv import read

    log = FeedbackLog(tmp_path / "fb.sqlite")
    texts = ["great movie", "awful plot", "it was fine", "loved it", "so dull", "meh"] * 5
    for i, text in enumerate(texts):
        log.add(f"r{i}", f"digest{i}", text, '{"score": 0.1}', (i % 7) - 3)
    log.add("r0", "digest0", "great movie", '{"score": 0.1}', 2.5)  # a correction: the latest label counts
    log.add("r-audio", "digest-a", None, '{"score": 0.1}', 1.0)  # no text: left out of label.csv
    log.close()
    out = tmp_path / "label.csv"
    assert main(["feedback", "export", str(tmp_path / "fb.sqlite"), "--out", str(out), "--valid", "0.3",
                 "--test", "0.3"]) == 0
    assert "wrote 30 rows" in capsys.readouterr().out
    splits = read(out, progress=False)
    assert len(splits.train.labels) + len(splits.valid.labels) + len(splits.test.labels) == 30
    assert min(len(splits.valid.labels), len(splits.test.labels)) > 0
    assert 2.5 in np.concatenate([splits.train.labels, splits.valid.labels, splits.test.labels])
    assert split_of("digest0", 0.3, 0.3) == split_of("digest0", 0.3, 0.3)


def test_export_names_each_split_and_warns_of_one_train_would_refuse(tmp_path, capsys):
    """20 records at the default --valid 0.1 --test 0.1 can hash to no test row: export said only "wrote 20 rows",
    and `edge-msa train` refused the file later."""
    log = FeedbackLog(tmp_path / "fb.sqlite")
    for i in range(6):
        log.add(f"r{i}", f"digest{i}", f"text {i}", '{"score": 0.1}', 1.0 - i % 2)
    log.close()
    out = tmp_path / "label.csv"
    assert main(["feedback", "export", str(tmp_path / "fb.sqlite"), "--out", str(out), "--test", "0"]) == 0
    printed = capsys.readouterr()
    valid = sum(split_of(f"digest{i}", 0.1, 0.0) == "valid" for i in range(6))
    assert printed.out == (f"wrote 6 rows to {out} (train {6 - valid}, valid {valid}, test 0; 0 feedback records "
                           "without text left out)\n")
    assert printed.err.splitlines()[-1] == (
        f"warning: split 'test' of {out} holds 0 labelled rows; edge-msa train and compress expect at least 2 in "
        "each of train, valid and test, not all labelled 0: collect more feedback or change --valid / --test")


def test_export_refuses_what_is_not_a_feedback_log(tmp_path, capsys):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(ArtifactError, match="not an edge-msa feedback log"):
        export_label_csv(other, tmp_path / "x.csv")
    with pytest.raises(ArtifactError, match="not an edge-msa feedback log"):
        FeedbackLog(other)
    assert main(["feedback", "export", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: feedback log '{tmp_path / 'missing.sqlite'}' does not exist; expected the SQLite file that "
                   "`edge-msa serve --feedback FILE` writes\n") and not (tmp_path / "x.csv").exists()
    log = FeedbackLog(tmp_path / "fb.sqlite")
    log.close()
    assert main(["feedback", "export", str(tmp_path / "fb.sqlite"), "--out", str(tmp_path / "x.csv"), "--valid",
                 "0.6", "--test", "0.5"]) == 2
    assert capsys.readouterr().err == "error: --valid 0.6 and --test 0.5; expected each >= 0 with a sum below 1\n"
    # the values as typed (type=float made `--valid 2` read 2.0), and a Python caller is told its keywords, not flags
    assert main(["feedback", "export", str(tmp_path / "fb.sqlite"), "--out", str(tmp_path / "x.csv"), "--valid",
                 "2"]) == 2
    assert capsys.readouterr().err == ("error: --valid 2; expected 0 <= valid < 1 (a fraction of the rows, with valid + "
                                       "test < 1)\n")
    with pytest.raises(InputError, match=r"^valid = 0\.6 and test = 0\.5; expected each >= 0 with a sum below 1$"):
        export_label_csv(tmp_path / "fb.sqlite", tmp_path / "x.csv", valid=0.6, test=0.5)
    assert not (tmp_path / "x.csv").exists()


def test_export_keeps_each_label_and_text_exactly(tmp_path, capsys):
    """label.csv held labels to 6 significant digits (`:g`): 1.4999996 became 1.5, another Acc-7 class; non-ASCII
    text with commas, quotes and a line break reads back as it was logged. Text of only whitespace is no text: it was
    exported as a training row with empty text, and counted as having text."""
    import csv

    log = FeedbackLog(tmp_path / "fb.sqlite")
    texts = {"r1": 'très bien, "super"\nzweite Zeile 😀', "r2": "这个电影很好"}
    log.add("r1", "d1", texts["r1"], "{}", 1.4999996)
    log.add("r2", "d2", texts["r2"], "{}", -1 / 3)
    log.add("r3", "d3", None, "{}", 2.0)
    log.add("r4", "d4", " \n\t", "{}", 1.0)
    log.close()
    out = tmp_path / "label.csv"
    assert main(["feedback", "export", str(tmp_path / "fb.sqlite"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote 2 rows to {out} (train 2, valid 0, test 0; 2 feedback records "
                                              "without text left out)\n")
    with open(out, newline="", encoding="utf-8") as f:
        rows = {row["clip_id"]: row for row in csv.DictReader(f)}
    assert {k: (row["text"], float(row["label"])) for k, row in rows.items()} == {
        "r1": (texts["r1"], 1.4999996), "r2": (texts["r2"], -1 / 3)}


def test_export_of_a_locked_log_or_one_without_the_columns_is_one_line(tmp_path, monkeypatch):
    """sqlite3's OperationalError escaped as a traceback (a feedback table without input_digest) or read "not a
    SQLite database (database is locked)" (a log another process holds locked)."""
    import functools

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY, request_id TEXT, text TEXT, label REAL)")
    with pytest.raises(ArtifactError, match=re.escape(f"cannot read the feedback rows of {old} (no such column: "
                                                      "input_digest); expected a log written by `edge-msa serve")):
        export_label_csv(old, tmp_path / "x.csv")
    FeedbackLog(tmp_path / "fb.sqlite").close()
    monkeypatch.setattr(sqlite3, "connect", functools.partial(sqlite3.connect, timeout=0.05))  # not 5 s
    holder = sqlite3.connect(tmp_path / "fb.sqlite", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ArtifactError, match=re.escape("(database is locked); expected a log written by `edge-msa "
                                                          "serve --feedback` that no other process holds locked")):
            export_label_csv(tmp_path / "fb.sqlite", tmp_path / "x.csv")
    finally:
        holder.close()
    assert not (tmp_path / "x.csv").exists()


def test_recent_predictions_are_bounded_and_thread_safe():
    recent = RecentPredictions(size=100)

    def fill(k: int) -> None:
        for i in range(500):
            recent.put(f"{k}-{i}", "d", None, {"score": i})

    threads = [threading.Thread(target=fill, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # which thread finished last depends on scheduling: one thread's last item is the newest of all
    assert recent.get("0-0") is None and any(recent.get(f"{k}-499") is not None for k in range(4))
    assert sum(recent.get(f"{k}-{i}") is not None for k in range(4) for i in range(500)) == 100


def test_serve_cli_bad_options_are_one_line_errors(media_bundle, tmp_path, capsys):
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    not_a_log = tmp_path / "notes.txt"
    not_a_log.write_text("my notes")
    cases = [(["--max-body", "0"], "error: --max-body 0; expected > 0\n"),  # was named max_body_bytes, the keyword
             (["--max-media-s", "-inf"], "error: --max-media-s -inf; expected > 0 (inf: no limit)\n"),
             (["--threads", "-1"], "error: --threads -1; expected >= 0 (0: the library's default)\n"),
             (["--max-batch", "0"], "error: --max-batch 0; expected >= 1\n"),  # named max_batch, the keyword
             (["--max-queue", "8", "--max-items", "8"],
              "error: --max-queue 8; expected >= 16 (--max-batch 16: a full batch must fit in the queue)\n"),
             (["--max-items", "300"],
              "error: --max-items 300; expected <= --max-queue (256): a batch request must fit in the queue\n"),
             (["--feedback", str(not_a_log)], "not a SQLite database"),
             (["--port", "70000"], "error: --port 70000; expected 0 <= port <= 65535 (0: any free port)\n"),
             (["--remember", "0"], "error: --remember 0; expected >= 1\n"),  # it named --port and --remember at once
             (["--max-wait-ms", "inf"], "error: --max-wait-ms inf; expected a finite number >= 0\n"),
             (["--max-wait-ms", "nan"], "error: --max-wait-ms nan; expected a finite number >= 0\n"),
             (["--drain-s", "-1"], "--drain-s -1; expected >= 0\n"),  # as typed, not -1.0
             (["--body-timeout-s", "inf"], "error: --body-timeout-s inf; expected a finite number > 0\n"),
             (["--body-deadline-s", "nan"], "error: --body-deadline-s nan; expected a finite number > 0\n"),
             (["--header-timeout-s", "nan"], "error: --header-timeout-s nan; expected a finite number > 0\n"),
             (["--root-path", "msa"], "error: --root-path 'msa'; expected a path prefix such as /msa: a / before each "
                                      "segment, none at the end, no . or .. segment, each of ASCII letters, digits "
                                      "and . _ ~ - only\n"),
             (["--root-path", "/msa/"], "error: --root-path '/msa/'; expected a path prefix such as /msa"),
             (["--root-path", "/"], "error: --root-path '/'; expected"),
             (["--root-path", "/müsli"], "error: --root-path '/müsli'; expected"),  # uvicorn: every connection closed
             (["--feedback", str(tmp_path)], "cannot open the feedback log"),
             (["--feedback", str(not_a_log / "x.sqlite")], "cannot open the feedback log")]
    for flags, words in cases:
        assert main(["serve", str(media_bundle), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert not_a_log.read_text() == "my notes"
    assert main(["serve", str(tmp_path / "nope")]) == 2 and "not a directory" in capsys.readouterr().err


def test_a_root_path_with_a_dot_segment_is_refused():
    """--root-path /msa/.. was taken: the browser resolves the page's /msa/../v1/predict to /v1/predict, outside the
    proxy's prefix (a 404), as it would any "." or ".." segment. Called directly: a prefix taken would start serving."""
    from edge_msa.cli.serve import check_root_path

    for prefix in ("/msa/..", "/./msa", "/.", "/a/../b"):
        with pytest.raises(InputError, match=rf"^--root-path '{re.escape(prefix)}'; expected .*no \. or \.\. segment"):
            check_root_path(prefix)
    for prefix in ("/msa", "/.well-known/msa", "/v1.2", "/..."):  # dots inside a segment are plain characters
        check_root_path(prefix)


def test_a_root_path_starlette_would_read_as_a_regex_is_refused():
    """starlette 0.35-0.37, which fastapi>=0.110 allows, makes a regex of the root path (starlette #2599): a prefix
    with ( ) * + $ was taken and would break routing and /metrics there. Called directly: a prefix taken would serve."""
    from edge_msa.cli.serve import check_root_path

    for prefix in ("/a(b)", "/a+b", "/a*", "/a$", "/a;b"):
        with pytest.raises(InputError, match=rf"^--root-path '{re.escape(prefix)}'; expected .*digits and \. _ ~ -"):
            check_root_path(prefix)
    for prefix in ("/msa", "/kiosk_7/msa-v2", "/~user"):
        check_root_path(prefix)


def test_batcher_settings_are_named_as_given():
    """From Python the keywords, one knob a line: "batching needs max_batch >= 1, max_queue >= max_batch, finite
    max_wait_ms >= 0; got ..." named every knob, and the keywords on serve's command line (its flags: the CLI test)."""
    for bad, says in (({"max_batch": 0}, "max_batch = 0; expected >= 1"),
                      ({"max_wait_ms": math.nan}, "max_wait_ms = nan; expected a finite number >= 0"),
                      ({"max_wait_ms": -1}, "max_wait_ms = -1; expected >= 0"),
                      ({"max_queue": 2}, "max_queue = 2; expected >= 4 (max_batch = 4: a full batch must fit in the "
                                         "queue)")):
        with pytest.raises(InputError, match=f"^{re.escape(says)}$"):
            MicroBatcher(lambda items: items, **{"max_batch": 4, "max_wait_ms": 0, "max_queue": 8, **bad})


def test_batcher_and_config_counts_from_python_are_whole_numbers():
    """serve's CLI parses these with type=int; from Python max_batch 2.5, max_queue 8.5 and remember 2.5 were taken as
    given, "2" was a TypeError from the comparison, and remember was not checked at all (remember=0 kept nothing for
    feedback to name); ServeConfig and MicroBatcher are what the CLI calls too, so its wording is unchanged."""
    from edge_msa.serve.config import ServeConfig

    for bad, says in (({"max_batch": 2.5}, "max_batch = 2.5; expected a whole number >= 1"),
                      ({"max_batch": "2"}, "max_batch = '2'; expected a whole number >= 1"),
                      ({"max_queue": 8.5}, "max_queue = 8.5; expected a whole number >= 4 (max_batch = 4: a full "
                                           "batch must fit in the queue)"),
                      ({"max_queue": "8"}, "max_queue = '8'; expected a whole number >= 4 (max_batch = 4: a full "
                                           "batch must fit in the queue)")):
        with pytest.raises(InputError, match=f"^{re.escape(says)}$"):
            MicroBatcher(lambda items: items, **{"max_batch": 4, "max_wait_ms": 0, "max_queue": 8, **bad})
    for bad, says in ((2.5, "remember = 2.5; expected a whole number >= 1"), (0, "remember = 0; expected >= 1"),
                      (True, "remember = True; expected a whole number >= 1")):
        with pytest.raises(InputError, match=f"^{re.escape(says)}$"):
            ServeConfig(bundle="b", remember=bad)


def test_max_items_over_max_queue_is_named_as_given_from_python(media_bundle):
    """A Service built in Python was told `--max-items 9 exceeds --max-queue 8`, flags it never typed; the keywords
    now (serve's flags on its command line: test_serve_cli_bad_options_are_one_line_errors)."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    from edge_msa.serve.app import Service
    from edge_msa.serve.config import ServeConfig

    config = ServeConfig(bundle=str(media_bundle), max_batch=4, max_queue=8, limits=Limits(max_items=9))
    says = "max_items = 9; expected <= max_queue (8): a batch request must fit in the queue"
    with pytest.raises(InputError, match=f"^{re.escape(says)}$"):
        Service(config)


def test_service_limits_are_named_as_given_and_inf_lifts_the_media_one():
    """One rule (errors.check_range): `service limits must be > 0; got {'max_media_seconds': -inf}` named the keyword
    in a dict; from Python the keyword is named, with its value (the flags: test_serve_cli_bad_options_...)."""
    for bad, says in (({"max_text_chars": 0}, "max_text_chars = 0; expected > 0"),
                      ({"max_media_seconds": -math.inf}, "max_media_seconds = -inf; expected > 0 (inf: no limit)"),
                      ({"max_media_seconds": math.nan}, "max_media_seconds = nan; expected > 0 (inf: no limit)"),
                      ({"max_steps": math.inf}, "max_steps = inf; expected a finite number > 0")):
        with pytest.raises(InputError) as exc:
            Limits(**bad)
        assert str(exc.value) == says
    assert Limits(max_media_seconds=math.inf).max_media_seconds == math.inf  # as `predict --max-media-s inf`


def test_service_count_limits_from_python_are_whole_numbers():
    """serve parses its count limits with type=int; Limits(max_steps=2.5) or max_text_chars=1e3 from Python was taken
    as given (errors.check_range's whole=True). inf is still told it must be finite, the media limit stays a float."""
    for bad, says in (({"max_steps": 2.5}, "max_steps = 2.5; expected a whole number > 0"),
                      ({"max_text_chars": 1e3}, "max_text_chars = 1000.0 is a float; expected a whole number > 0 "
                                                "(write 1000)"),
                      ({"max_items": "3"}, "max_items = '3'; expected a whole number > 0"),
                      ({"max_body_bytes": math.nan}, "max_body_bytes = nan; expected a finite number > 0")):
        with pytest.raises(InputError) as exc:
            Limits(**bad)
        assert str(exc.value) == says
    assert Limits(max_media_seconds=2.5, max_items=np.int64(3)).max_items == 3


def test_serve_without_the_extra_names_the_fix(media_bundle):
    code = ("import sys; sys.modules['fastapi'] = None; from edge_msa.cli import main; "
            f"sys.exit(main(['serve', {str(media_bundle)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: fastapi is required for edge-msa serve") and 'edge-msa[serve]' in r.stderr


def test_serve_help_names_every_stop_the_drain_covers(capsys):
    """--drain-s said it applied "on SIGTERM", while Ctrl-C and a batch worker dead on a bug stop the server through
    the same drain (cli.serve.serve_until_stopped); its help and the epilog now name the stops from one place."""
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # as argparse wrapped it
    start = shown.rindex("--drain-s DRAIN_S")  # its option's line, not the usage's
    drain = shown[start:shown.index("--log-level {", start)]
    for stop in ("Ctrl-C", "SIGTERM", "a batch worker dead on a bug"):
        assert stop in drain and stop in shown[shown.index("examples:"):], stop


def test_serve_on_a_busy_port_is_one_line_error(media_bundle, capsys):
    """uvicorn logged the bind error and exited 1 or 3 (and an unknown --host likewise)."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["serve", str(media_bundle), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port} (") and err.count("\n") == 1, err


def test_feedback_label_beyond_float_is_a_400():
    """A JSON integer past float64 made math.isfinite raise OverflowError: a 500."""
    from edge_msa.serve.app import check_feedback

    for label in (10 ** 400, float("nan"), True):
        with pytest.raises(RequestError) as info:
            check_feedback({"request_id": "r", "label": label})
        assert info.value.status == 400 and "is not a number in [-3, 3]" in info.value.message
    assert check_feedback({"request_id": "r", "label": -3}) == ("r", -3.0)
    for body, got in (({"request_id": "r", "label": 1, "note": "x"}, "has fields ['label', 'note', 'request_id']"),
                      ([1], "is list")):  # the answer said only what was expected
        with pytest.raises(RequestError, match=re.escape(f"feedback {got}; expected {{")):
            check_feedback(body)
    for request_id, got in ((5, "int"), ("", "empty")):  # the answer said only what a request_id must be
        with pytest.raises(RequestError) as info:
            check_feedback({"request_id": request_id, "label": 1})
        assert info.value.message == f"request_id is {got}; expected the non-empty string a prediction returned"


def test_openapi_states_the_media_limit_as_it_was_given():
    """The schema words the duration limit as featurize and predict do (features.seconds_text): ':g' read a limit of
    30.0000001 s as 30."""
    from edge_msa.serve.openapi import input_schema

    schema = input_schema(SERVE_SPEC, Limits(max_media_seconds=30.0000001))
    media = [form for form in schema["properties"]["audio"]["oneOf"] if form["type"] == "string"]
    assert "at most 30.0000001 s" in media[0]["description"]


def test_the_header_deadline_runs_only_while_a_header_is_awaited():
    """serve.connections extends uvicorn's H11Protocol and reads its private attributes (conn, cycle, transport,
    loop, server_state): driven here without a network, so a uvicorn that renamed or reshaped one fails this test
    rather than leaving the service's connections without a deadline."""
    import asyncio
    from unittest import mock

    import h11
    uvicorn = pytest.importorskip("uvicorn")
    from uvicorn.server import ServerState

    from edge_msa.serve.connections import HeaderDeadline
    from edge_msa.serve.metrics import ServiceMetrics

    metrics = ServiceMetrics(lambda: 0)

    def closes() -> list[float | None]:
        return [metrics.registry.get_sample_value("edge_msa_header_timeouts_total", {"outcome": o})
                for o in ("408", "closed")]

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def drive() -> None:
        def connect():
            transport = mock.Mock(spec=asyncio.Transport, **{"is_closing.return_value": False,
                                                             "get_extra_info.return_value": None})
            state = ServerState()
            state.default_headers = [(b"date", b"Mon, 07 Dec 2026 12:00:00 GMT")]  # uvicorn's, set as it starts
            protocol = HeaderDeadline.with_timeout(5, metrics)(config=uvicorn.Config(app, log_config=None), server_state=state,
                                                      app_state={})
            protocol.connection_made(transport)
            return protocol, transport

        protocol, transport = connect()
        first = protocol.deadline
        assert first is not None and 4.9 < first.when() - asyncio.get_running_loop().time() <= 5
        protocol.data_received(b"GET / HTTP/1.1\r\n")
        assert protocol.deadline is first  # the deadline is for the whole header: bytes do not restart it
        protocol.data_received(b"Host: x\r\n\r\n")
        assert protocol.deadline is None and first.cancelled()  # the app answers: off
        for _ in range(5):
            await asyncio.sleep(0)
        assert protocol.cycle.response_complete and protocol.deadline not in (None, first)  # the next header's
        protocol.data_received(b"GET / HT")
        protocol.expire()  # a request had begun: 408, then closed
        written = b"".join(c.args[0] for c in transport.write.call_args_list)
        assert written.startswith(b"HTTP/1.1 204") and b"HTTP/1.1 408 Request Timeout\r\n" in written
        assert b"connection: close" in written and b"date: Mon, 07 Dec" in written.split(b"408")[1]
        assert b'"request header incomplete after 5 s; expected a whole request header within 5 s of connecting or ' \
               b'of the previous answer"' in written and transport.close.called
        protocol.connection_lost(None)
        assert protocol.deadline is None
        assert closes() == [1, 0]  # counted by what became of the connection, not logged
        protocol, transport = connect()
        protocol.expire()  # nothing came: closed without an answer
        assert transport.close.called and not transport.write.called and protocol.conn.our_state is h11.IDLE
        protocol.connection_lost(None)
        assert protocol.deadline is None
        assert closes() == [1, 1]

    asyncio.run(drive())


@pytest.mark.parametrize("lose", [None, "on_response_complete", "connection_made", "cycle", "__init__"])
def test_a_uvicorn_without_what_the_header_deadline_needs_serves_plain_h11_with_one_warning(
        lose, media_bundle, tmp_path, monkeypatch, capsys):
    """setup.py bounds uvicorn from below only, and HeaderDeadline extends H11Protocol's methods and reads its private
    attributes: a release that renamed one failed every connection with a traceback. Checked as serve starts now: a
    method gone (or only asyncio's no-op left), an attribute a fresh protocol lacks, or a constructor it cannot build
    one with runs plain H11Protocol, with one line saying --header-timeout-s is off."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from edge_msa.serve import app as serve_app
    from edge_msa.serve.connections import HeaderDeadline

    init = H11Protocol.__init__

    def init_without(self, *args, **kwargs):
        init(self, *args, **kwargs)
        delattr(self, lose)

    if lose == "__init__":
        monkeypatch.setattr(H11Protocol, "__init__", lambda self, config, server_state, app_state, app: None)
    elif lose in vars(H11Protocol):
        monkeypatch.delattr(H11Protocol, lose)
    elif lose:
        monkeypatch.setattr(H11Protocol, "__init__", init_without)
    used, services, create_app = [], [], serve_app.create_app
    monkeypatch.setattr(serve_app, "create_app", lambda service: services.append(service) or create_app(service))
    monkeypatch.setattr(uvicorn.Server, "run",
                        lambda self, sockets: used.append(self.config.http) or sockets[0].close())
    assert main(["serve", str(media_bundle), "--port", "0", "--log-level", "warning",
                 "--feedback", str(tmp_path / "log.sqlite")]) == 0
    services[0].close()
    err = capsys.readouterr().err
    if lose is None:
        assert err == "" and issubclass(used[0], HeaderDeadline)
        return
    name = "__init__(config, server_state, app_state)" if lose == "__init__" else lose
    assert used == [H11Protocol] and err == (
        f"warning: uvicorn {uvicorn.__version__}'s H11Protocol has no {name}, which the header deadline needs: "
        "--header-timeout-s is off (--body-timeout-s and --body-deadline-s still apply); expected a uvicorn that has "
        "them (0.29 to 0.55 checked)\n")


def test_the_start_up_line_behind_a_proxy_sends_the_user_through_it(media_bundle, tmp_path, monkeypatch, capsys):
    """With --root-path the page at the listening address calls its routes under the prefix, which only the proxy
    answers: the start-up line said "demo page" at that address, a page whose every call is a 404 there."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    from edge_msa.cli import serve as serve_cli

    def stop_at_once(service, sock, args) -> int:
        sock.close()
        service.close()
        return 0

    monkeypatch.setattr(serve_cli, "serve_until_stopped", stop_at_once)
    for flags, where in (([], "(demo page;"), (["--root-path", "/msa"], "(demo page through the proxy, under /msa/;")):
        assert main(["serve", str(media_bundle), "--port", "0", "--log-level", "info",
                     "--feedback", str(tmp_path / "log.sqlite"), *flags]) == 0
        assert where in capsys.readouterr().err
