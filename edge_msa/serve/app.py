"""The REST service (FastAPI): one bundle loaded once, inputs micro-batched, limits answered as 4xx JSON.

Routes: POST /v1/predict (JSON or multipart), POST /v1/predict/batch, POST /v1/feedback, GET (and HEAD) /healthz,
GET /v1/info, GET /metrics, GET /openapi.json and /docs, GET / (demo page). Every error is `{"error": "..."}` with a
4xx status (a 500 only for a bug; 503 for what the server cannot do now). Imported only by `edge-msa serve`, after
it checked the [serve] extra is there. Only the public runtime API is used: `edge_msa.load(bundle).predict_batch`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil
import sqlite3
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path, PurePath
from typing import Any, AsyncGenerator, AsyncIterator, Callable, Mapping, NoReturn

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import EdgeMSAError, InputError, given, one_line, option_name
from ..jsonio import dumps
from ..labels import SCORE_LIMIT
from ..runtime.manifest import Manifest
from ..runtime.predictor import BrokenModel
from ..spec import MODALITIES
from ..version import __version__
from .batching import MicroBatcher, QueueFull, Stopped
from .config import ServeConfig
from .feedback import FeedbackLog, RecentPredictions
from .inputs import Limits, Parsed, RequestError, not_utf8, parse_items, scratch_writes, without_scratch
from .metrics import ServiceMetrics
from .openapi import (DESCRIPTION, Batch, Documented, Health, Info, Saved, Served, Settings, answer, docs, operations,
                      public_path, route_path)
from .routes import DOCS, FEEDBACK, HEALTHZ, INFO, METRICS, OPENAPI, PAGE, PREDICT, PREDICT_BATCH, ROUTES

OFFLOAD_BYTES = 32 * 1024  # bodies above this are parsed in a worker thread, one at a time (see parse_request)
DRAIN_FACTOR = 16  # an oversized body is read and dropped up to this many times the limit (see read_body)
# manifest fields holding a path on the exporting machine, which /v1/info leaves out (see public_manifest)
HOST_PATHS = (("export_options", "checkpoint"), ("export_options", "data"), ("data", "path"))
CLIENT_CLOSED = 499  # nginx's "client closed request": no one reads it, /metrics counts it (see read_body)
# what a request needing the batch worker answers (503) where the app's lifespan, which starts it, was not run
NOT_STARTED = ("not serving: the app's lifespan was not run, so its batch worker never started; expected the app run "
               "by `edge-msa serve`, or its lifespan entered by the parent app's (see create_app)")
# uvicorn's own logger: a line here has the server log's format and follows --log-level (see refused)
SERVER_LOG = logging.getLogger("uvicorn.error")


class Service:
    """The loaded bundle and everything around it. Constructing it loads the bundle and opens the log, so a bad
    bundle or log is one `error:` line before any port is bound; `close` drains and releases."""

    def __init__(self, config: ServeConfig) -> None:
        import edge_msa
        from ..runtime.manifest import read_manifest

        self.config = config
        self.manifest = read_manifest(config.bundle)
        self.spec = self.manifest.feature_spec
        if config.limits.max_items > config.max_queue:  # named as given: serve's flags, or the keywords in Python
            raise InputError(f"{given('max_items', config.limits.max_items)}; expected <= "
                             f"{option_name('max_queue')} ({config.max_queue}): a batch request must fit in the queue")
        self.log = FeedbackLog(config.feedback) if config.feedback else None
        # parse_item measured every upload against limits.max_media_seconds before it joined a batch: no second limit
        # (the predictor still opens each file's header before its gate, a few ms for a video)
        self.predictor = edge_msa.load(config.bundle, threads=config.threads, max_media_seconds=math.inf)
        self.batcher = MicroBatcher(self.predictor.predict_batch, config.max_batch, config.max_wait_ms,
                                    config.max_queue, on_batch=self._on_batch)
        self.metrics = ServiceMetrics(lambda: self.batcher.depth)
        self.recent = RecentPredictions(config.remember)
        self.large_parse: asyncio.Semaphore | None = None  # one large body parsed at a time (see parse_request)

    def _on_batch(self, size: int, seconds: float) -> None:
        self.metrics.observe_batch(size, seconds)

    def start(self) -> None:
        """On the server's loop (the lifespan): the batch worker, and the semaphore of large parses, made here since
        Python 3.9 binds an asyncio primitive to the loop current when it is made, not the one it is used on."""
        self.large_parse = asyncio.Semaphore(1)
        self.batcher.start()

    def check_started(self) -> None:
        """503 (NOT_STARTED) for a request needing what `start` makes, where the lifespan never ran it: an app
        mounted in a user's own without its lifespan queued each prediction for a worker that never came."""
        if not self.batcher.started:
            raise RequestError(503, NOT_STARTED)

    def warm_up(self) -> None:
        """One prediction before serving, so the first client does not pay session and encoder start-up."""
        import numpy as np

        item: dict[str, Any] = {m: np.zeros((1, self.spec.dim(m)), np.float32) for m in MODALITIES
                if not self.spec.computes(m)}
        if "text" not in item:
            item["text"] = "warm up"
        self.predictor.predict_batch([item])

    def close(self) -> None:
        """After uvicorn's drain: finish the queue (inputs of cancelled requests are dropped), then release.
        A worker still inside a runtime call after `timeout` keeps its sessions; the process exit frees them."""
        self.batcher.close(timeout=2.0)
        if self.log:
            self.log.close()
        if not self.batcher.running:
            self.predictor.close()

    async def predict(self, parsed: list[Parsed]) -> list[dict[str, Any]]:
        """Queue the inputs (all or none: QueueFull -> 429, Stopped -> 503), await their batched predictions."""
        futures = self.batcher.submit([p.item for p in parsed])
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
        out = []
        for i, (p, result) in enumerate(zip(parsed, results)):
            # a broken bundle is the server's fault, not the request's: a 500 (not a `number | null` score for every
            # client to handle); its reason names no folder of this machine
            if isinstance(result, BrokenModel):
                raise RequestError(500, result.reason)
            if isinstance(result, EdgeMSAError):  # e.g. the front end's "audio is 0.1 ms long" of an upload
                message = without_scratch(str(result), p.item)
                raise RequestError(400, f"input #{i}: {message}" if len(parsed) > 1 else message)
            if isinstance(result, BaseException):
                raise result
            # vars, not to_dict: the fields are plain already, and asdict's deep copy cost ~50 us an answer
            skipped = {m: without_scratch(why, p.item) for m, why in result.skipped.items()}
            prediction = {**vars(result), "skipped": skipped}
            request_id = uuid.uuid4().hex
            self.metrics.observe_prediction(prediction)
            self.recent.put(request_id, p.digest, p.text, prediction)
            # its warnings name a truncated text; Served raises if its fields and the Prediction's drift apart
            out.append(vars(Served(**prediction, request_id=request_id)))
        return out

    async def add_feedback(self, request_id: str, label: float) -> int:
        """Append the user's label for a served prediction to the log; returns the row id once durable."""
        if self.log is None:
            raise RequestError(404, "feedback is off on this service; expected one started with --feedback log.sqlite")
        served = self.recent.get(request_id)
        if served is None:
            raise RequestError(404, f"request_id '{request_id[:64]}' is unknown (or older than the last "
                                    f"{self.config.remember} predictions); expected an id a prediction returned")
        try:
            return await run_in_threadpool(self.log.add, request_id, *served, label)
        except sqlite3.Error as exc:  # another writer held the lock past the busy timeout, the disk is full, ...
            raise RequestError(503, f"feedback not saved: the log refused the write ({exc}); expected a retry once "
                                    "the server's feedback log is writable", {"Retry-After": "1"}) from None

    @property
    def bundle_name(self) -> str:
        """The bundle as /healthz and /v1/info name it: its folder's name, not its path on this machine (a client
        has no use for the server's folder layout or user names)."""
        return Path(self.config.bundle).resolve().name

    def info(self) -> Info:
        c = self.config
        service = Settings(max_batch=c.max_batch, max_wait_ms=c.max_wait_ms, max_queue=c.max_queue,
                           feedback=bool(c.feedback), limits=asdict(c.limits))
        return Info(edge_msa=__version__, bundle=self.bundle_name, manifest=public_manifest(self.manifest),
                    service=service)


def public_manifest(manifest: Manifest) -> dict[str, Any]:
    """The manifest as /v1/info shows it: less the paths of the machine that exported the bundle (HOST_PATHS; they
    name its users and folder layout and are of no use to a client), and with a path quoted elsewhere ("all 240
    validation samples of /home/...") cut to its file name. The lineage hashes and split sizes stay: they tell which
    data the model saw. `edge-msa info`, run by the bundle's owner, keeps the paths."""
    data = manifest.to_dict()
    paths = set()
    for section, key in HOST_PATHS:
        value = (data.get(section) or {}).pop(key, None)  # "data" is None for a bundle of unknown lineage
        if isinstance(value, str) and value:
            paths.add(value)

    def cut(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cut(v) for v in value]
        if isinstance(value, str):
            for path in paths:
                value = value.replace(path, PurePath(path).name)
        return value

    return cut(data)


class Scratch:
    """A per-request temp folder for media files, made only when a request carries media."""

    def __init__(self) -> None:
        self._path: Path | None = None

    def __call__(self) -> Path:
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix="edge-msa-serve-"))
        return self._path

    def cleanup(self) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)


async def read_body(request: Request, limits: Limits) -> bytearray:
    """The request body, or 413 if it exceeds limits.max_body_bytes (`limit` here), or 415 if it is compressed
    (check_encoding). A declared Content-Length over the limit, or a Content-Encoding, is answered at once where
    uvicorn itself drops the unread body (see unread_body_is_dropped), as nginx refuses from the header. Otherwise
    an oversized (or compressed) body is still read (and dropped) up to DRAIN_FACTOR x limit,
    because uvicorn closes a `Connection: close` connection after the answer, and closing on a client that is still
    sending resets its connection before it can read the 413; beyond that the 413 goes out as it stands. A client
    that hangs up mid-body (a phone leaving coverage) is answered CLIENT_CLOSED, not a 500 and a traceback in the
    log: /metrics tells it apart from a bug; one that pauses longer than limits.body_timeout_s, or whose body is not
    whole limits.body_deadline_s after its first read, is answered 408 and its connection closed (see paced), or 413
    where its size is already known to be over the limit (its Content-Length, or the bytes read): a 408 invites the
    client to send the body again, which can only fail again, where the size is what it must change. The
    body grows in place: its chunks joined at the end held each body twice (16 MiB at the default --max-body);
    json.loads and the multipart parser take a bytearray as they take bytes."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length", "")
    over = declared.isdigit() and int(declared) > limit
    if unread_body_is_dropped(request):  # what the header refuses is refused before the body, as nginx does
        if over:
            raise too_large(request, limit)
        check_encoding(request)
    body, size = bytearray(), 0
    try:
        async for chunk in paced(request.stream(), limits, lambda: size):
            size += len(chunk)
            if size <= limit:
                body += chunk
            elif size > DRAIN_FACTOR * limit:
                break
    except ClientDisconnect:
        raise RequestError(CLIENT_CLOSED, f"client closed the connection after {size} bytes of the body; expected "
                                          "the whole body") from None
    except RequestError as exc:  # paced's 408: the size, where already known to be over, is the answer
        if exc.status == 408 and (over or size > limit):
            raise too_large(request, limit, exc.headers) from None
        raise
    if size > limit:
        raise too_large(request, limit)
    check_encoding(request)
    return body


def too_large(request: Request, limit: int, headers: Mapping[str, str] | None = None) -> RequestError:
    """read_body's 413, naming the declared size where there is one (a chunked body's is not known: "over")."""
    declared = request.headers.get("content-length", "")
    return RequestError(413, f"body has {declared if declared.isdigit() else 'over ' + str(limit)} bytes; expected "
                             f"at most {limit}", headers)


def check_encoding(request: Request) -> None:
    """415 for a compressed body: a gzipped one was answered "malformed JSON ('utf-8' codec can't ...)". Told by the
    header, so read_body answers it before the body where it answers an oversized one (a gzipped upload was read
    whole, up to --max-body, only to be refused)."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise RequestError(415, f"content encoding '{encoding[:40]}' is not supported; expected an uncompressed body")


async def paced(stream: AsyncIterator[bytes], limits: Limits, size: Callable[[], int]) -> AsyncIterator[bytes]:
    """`stream`'s chunks, or 408 once none came for limits.body_timeout_s (a pause), or once they are not all in
    limits.body_deadline_s after the first read (`size`: the bytes read so far, for the message). uvicorn times out
    only an idle connection between requests (timeout_keep_alive), not a body in progress: a client that sent its
    header and then stalled (a phone gone out of coverage, or a slowloris client) held its connection and task for
    ever, and an oversized body with `Connection: close` is drained (see read_body) at whatever pace its client
    sends. The pause alone let a client sending a byte per pause do the same, hence the deadline; one wait_for per
    chunk bounds both (asyncio.timeout is Python 3.11's). The 408 says `Connection: close`, so uvicorn closes the
    connection rather than wait to drop the rest of a body that may never come (nginx's client_body_timeout, per
    read, answers the same)."""
    pause, whole = limits.body_timeout_s, limits.body_deadline_s
    end = time.monotonic() + whole
    while True:
        left = end - time.monotonic()
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), min(pause, left))
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11; asyncio's own before
            if left <= pause:
                why = (f"not whole after {whole:g} s ({size()} bytes); expected the whole body within {whole:g} s "
                       "of its header")
            else:
                why = (f"stalled: no byte for {pause:g} s after {size()} bytes; expected the rest of the body within "
                       f"{pause:g} s of its last bytes")
            raise RequestError(408, f"request body {why}", {"Connection": "close"}) from None
        yield chunk


def unread_body_is_dropped(request: Request) -> bool:
    """Whether answering before the body is read is safe: the client of an HTTP/1.1 connection it keeps open is
    not reset, as uvicorn (its h11 and httptools protocols alike) reads and drops the rest of a body the app did not
    read, then serves the connection's next request; one that sent `Expect: 100-continue` (curl, for an upload over
    1 MiB) gets no 100 and sends nothing. A request with `Connection: close` (urllib sends it) or of HTTP/1.0 is
    closed after the answer, so its client, if still sending, is reset before it reads the 413 (tested)."""
    if request.headers.get("expect", "").lower() == "100-continue":
        return True
    closes = "close" in request.headers.get("connection", "").lower().replace(" ", "").split(",")
    return request.scope.get("http_version") == "1.1" and not closes


async def drain(request: Request, limits: Limits) -> None:
    """Read and drop the body of a request answered without it, where uvicorn closes the connection after the answer
    (not unread_body_is_dropped), so that a client still sending is not reset before it reads the answer: read_body's
    rule, with its 408 and CLIENT_CLOSED raised (what became of the connection) and its 413 and 415 not (the body is
    not used: the caller's answer says what was wrong)."""
    if unread_body_is_dropped(request):
        return
    try:
        await read_body(request, limits)
    except RequestError as exc:
        if exc.status not in (413, 415):
            raise


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_json(body: bytes | bytearray) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise not_utf8("JSON body", exc) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise RequestError(400, f"malformed JSON ({one_line(exc)}); expected a JSON object") from None


async def refuse_type(request: Request, limits: Limits, expected: str) -> NoReturn:
    """415 for a content type the route does not take. Told by the header, but answered before the body only where
    uvicorn drops the unread body (unread_body_is_dropped), as the early 413 is: a `Connection: close` request
    (urllib's) is read first, read_body's own refusals first, since closing on a client still sending its body (a
    4 MB text/plain one) reset the connection before the client read the 415."""
    if not unread_body_is_dropped(request):
        await read_body(request, limits)
    kind = content_type(request)
    raise RequestError(415, f"content type '{kind or 'none'}' is not supported here; expected {expected}")


async def json_body(request: Request, limits: Limits) -> Any:
    if content_type(request) != "application/json":
        await refuse_type(request, limits, "application/json")
    return parse_json(await read_body(request, limits))


class StrictTextForm(MultiPartParser):
    """starlette's multipart parser, refusing a text field its charset (UTF-8 unless the request declares one) cannot
    decode: starlette falls back to latin-1, and the garbled text was scored with a 200 where a JSON body that is
    not UTF-8 answers 400. Both answer `not_utf8` now."""

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:  # a text field; files are bytes
            try:
                part.data.decode(self._charset)
            except UnicodeDecodeError as exc:
                raise not_utf8(f"form field '{part.field_name[:40]}'", exc) from None
        super().on_part_end()


async def multipart_item(request: Request, body: bytes | bytearray, limits: Limits) -> dict[str, Any]:
    """A multipart form: a `text` field and `audio` / `video` files -> the JSON-style input (media as bytes). A file
    part without a name or a byte is a form's file input left empty (browsers send it so): not given, as JSON null."""
    async def replay() -> AsyncGenerator[bytes | bytearray, None]:
        yield body

    # starlette types the stream as bytes; its parser takes read_body's bytearray as it does bytes (tested)
    parser = StrictTextForm(request.headers, replay(),  # type: ignore[arg-type]
                            max_files=2, max_fields=3, max_part_size=limits.max_body_bytes)
    try:
        with scratch_writes():  # a file part past 1 MiB is spooled to the temp folder
            form = await parser.parse()
    except MultiPartException as exc:  # starlette's word for a broken form: "Missing boundary in multipart."
        raise RequestError(400, f"malformed multipart form ({exc.message}); expected a text field and audio / "
                                "video files") from None
    try:
        obj: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile) and not value.filename and not value.size:
                continue
            if key in obj or key not in ("text", "audio", "video"):
                raise RequestError(400, f"form field '{key}' is unknown or repeated; expected text, audio, video")
            if (key == "text") != isinstance(value, str):
                raise RequestError(400, f"form field '{key}' is {'a file' if key == 'text' else 'a text field'}; "
                                        f"expected {'a text field' if key == 'text' else 'a file'}")
            obj[key] = await value.read() if isinstance(value, UploadFile) else value
        return obj
    finally:
        await form.close()


async def parse_request(request: Request, service: Service, scratch: Scratch, many: bool) -> list[Parsed]:
    """Body -> validated inputs: JSON {..} (or {"inputs": [..]} when many), or a multipart form."""
    limits = service.config.limits
    kind = content_type(request)
    if kind not in ("application/json", "multipart/form-data") or (many and kind != "application/json"):
        await refuse_type(request, limits, "application/json" if many else "application/json or multipart/form-data")
    body = await read_body(request, limits)
    form = await multipart_item(request, body, limits) if kind == "multipart/form-data" else None

    def parse_all() -> list[Parsed]:
        obj = parse_json(body) if form is None else form
        return parse_items(batch_items(obj, limits.max_items) if many else [obj], service.spec, limits, scratch, many)

    def parse_offloaded() -> list[Parsed] | RequestError:
        """parse_all, a refusal returned as a copy without its traceback: the frames hold the parsed body, and a
        thread pool worker keeps the last error it raised until its next job (anyio), so each idle worker held a
        refused body's ~80 MiB."""
        try:
            return parse_all()
        except RequestError as exc:
            return RequestError(exc.status, exc.message, exc.headers)

    if len(body) <= OFFLOAD_BYTES:
        return parse_all()
    # JSON numbers take ~10x their text as Python objects: an 8 MiB body of feature rows peaked at ~80 MiB while
    # parsed, before --max-steps could refuse it, and N such requests at N x 80 MiB (each parsed on the event loop,
    # then held while its arrays were checked in a thread). One large body is parsed at a time; the others wait
    # holding their bytes (at most --max-body each).
    assert service.large_parse is not None  # made by Service.start, in the lifespan, before any request
    async with service.large_parse:
        parsed = await run_in_threadpool(parse_offloaded)
    if isinstance(parsed, RequestError):
        raise parsed
    return parsed


def batch_items(obj: Any, max_items: int) -> list:
    """The inputs of a batch body {"inputs": [...]}. Other fields are refused, as an input's are: a misspelt or
    imagined option beside the inputs (e.g. "max_batch") was ignored without a word."""
    expected = f"expected {{\"inputs\": [...]}} with 1 to {max_items} inputs"
    items = obj.get("inputs") if isinstance(obj, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= max_items:  # the answer said only what was expected
        got = (f"batch body is {type(obj).__name__}" if not isinstance(obj, dict) else
               "batch body has no \"inputs\"" if "inputs" not in obj else
               f"inputs is {type(items).__name__}" if not isinstance(items, list) else f"batch has {len(items)} inputs")
        raise RequestError(400, f"{got}; {expected}")
    unknown = sorted(set(obj) - {"inputs"})
    if unknown:
        raise RequestError(400, f"batch body has unknown fields {unknown}; {expected} and nothing else")
    return items


def check_feedback(obj: Any) -> tuple[str, float]:
    if not isinstance(obj, dict) or set(obj) != {"request_id", "label"}:
        got = f"has fields {sorted(obj)}" if isinstance(obj, dict) else f"is {type(obj).__name__}"
        raise RequestError(400, f"feedback {got}; expected {{\"request_id\": str, \"label\": number in [-3, 3]}}")
    request_id, label = obj["request_id"], obj["label"]
    if not isinstance(request_id, str) or not request_id:
        got = "empty" if isinstance(request_id, str) else type(request_id).__name__
        raise RequestError(400, f"request_id is {got}; expected the non-empty string a prediction returned")
    number = isinstance(label, (int, float)) and not isinstance(label, bool)
    if not number or not -SCORE_LIMIT <= label <= SCORE_LIMIT:  # NaN fails too
        raise RequestError(400, f"label {label!r:.40} is not a number in [-3, 3]; expected the sentiment the user "
                                "meant")
    return request_id, float(label)


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP response by path and status and times it (including the
    4xx answers of exception handlers), without BaseHTTPMiddleware's per-request task overhead."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            # the route's path: a mounted app's requests carry the mount's prefix, its root_path (as behind uvicorn's
            # --root-path), and were all counted "other"
            path = route_path(scope)
            path = path if path in ROUTES else "other"
            self.metrics.observe_request(path, status[0], time.perf_counter() - start)


class StrictJSONResponse(JSONResponse):
    """Every JSON answer of the service, written by edge_msa.jsonio as the package's files are: starlette's own
    refuses NaN and inf (allow_nan=False), so /v1/info of a bundle with a NaN corr (a collapsed model) or of a service
    run with `--max-media-s inf` was a 500; they are null and "Infinity" now, as in manifest.json."""

    def render(self, content: Any) -> bytes:
        return dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return StrictJSONResponse({"error": message}, status_code=status, headers=headers)


async def refused(request: Request, exc: RequestError) -> JSONResponse:
    """A refusal as its JSON answer; a 5xx (the server's fault: a broken model, a full disk, a missing extra) also
    leaves one line in the server log, where a BrokenModel's 500 left nothing and only a client saw why. A bug's 500
    is uvicorn's to log (see bug)."""
    if exc.status >= 500:
        SERVER_LOG.error("%s %s answered %d: %s", request.method, request.url.path, exc.status, exc.message)
    return error(exc.status, exc.message, exc.headers)


async def busy(request: Request, exc: QueueFull) -> JSONResponse:
    return error(429, str(exc), {"Retry-After": str(exc.retry_after)})


async def stopped(request: Request | None, exc: Stopped) -> JSONResponse:
    return error(503, str(exc), {"Retry-After": str(exc.RETRY_AFTER)})


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """404 and 405 as one line saying what to send instead (starlette's detail is "Not Found", "Method Not
    Allowed"). starlette answers them before the body is read, so a `Connection: close` request's body is drained
    first (see drain), as refuse_type's is: a 4 MB POST to a mistyped path (urllib's) was reset before it read the
    404."""
    try:
        await drain(request, request.app.state.limits)
    except RequestError as refusal:  # the body stalled (408) or its client hung up (CLIENT_CLOSED)
        return await refused(request, refusal)
    message, path = str(exc.detail), request.url.path
    if exc.status_code == 404:
        message = f"no route {path[:100]}; expected one of {', '.join(public_path(request, r) for r in ROUTES)}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {path}; expected {(exc.headers or {}).get('Allow', 'another')}"
    return error(exc.status_code, message, exc.headers)


async def bug(request: Request, exc: Exception) -> JSONResponse:
    """The 500 of an exception no handler expected. Not logged here: starlette re-raises it once this answer went
    out, and uvicorn logs its traceback ("Exception in ASGI application"; tested)."""
    return error(500, f"internal error ({type(exc).__name__}); see the server log")


# no RequestValidationError handler: the routes read the raw request and declare no parameters, so FastAPI validates
# nothing (tests/test_serve_units.py checks it of every route)
ERROR_HANDLERS = ((RequestError, refused), (QueueFull, busy), (Stopped, stopped), (HTTPException, http_error),
                  (Exception, bug))


def create_app(service: Service) -> FastAPI:
    """The FastAPI app around a loaded Service; the lifespan starts the batch worker and drains it at exit.

    What a handler needs that is no asyncio object is on `app.state`, set here (http_error is called with the request
    alone), so the app answers without its lifespan too: starlette runs no mounted app's lifespan, and a request
    needing the batch worker then answers 503 (NOT_STARTED). Mounted in a user's own app, it is served by the
    parent's lifespan entering its own:

        @asynccontextmanager
        async def lifespan(parent):
            async with app.router.lifespan_context(app):
                yield

        FastAPI(lifespan=lifespan).mount("/msa", app)
    """
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        service.close()  # uvicorn has already let in-flight requests finish (SIGTERM drain)

    app = Documented(title="edge-msa", version=__version__, lifespan=lifespan, description=DESCRIPTION, docs_url=None,
                     redoc_url=None, openapi_url=OPENAPI, exception_handlers=dict(ERROR_HANDLERS),
                     default_response_class=StrictJSONResponse)
    app.state.limits = service.config.limits
    body = operations(service.spec, service.config.limits)  # the routes read raw requests: FastAPI infers none
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)

    async def predict(request: Request, many: bool) -> list[dict[str, Any]]:
        try:
            service.check_started()  # before the body is parsed: nothing would run it
        except RequestError:  # so drained first (see drain), as http_error's 404: a 4 MB prediction with urllib's
            await drain(request, service.config.limits)  # `Connection: close` was reset before it read the 503
            raise
        scratch = Scratch()
        try:
            return await service.predict(await parse_request(request, service, scratch, many))
        finally:
            scratch.cleanup()

    @app.post(PREDICT, openapi_extra=body[PREDICT], responses=answer(Served))
    async def predict_one(request: Request):
        return (await predict(request, many=False))[0]

    @app.post(PREDICT_BATCH, openapi_extra=body[PREDICT_BATCH], responses=answer(Batch))
    async def predict_many(request: Request):
        return Batch(results=await predict(request, many=True))

    @app.post(FEEDBACK, openapi_extra=body[FEEDBACK], responses=answer(Saved))
    async def feedback(request: Request):
        request_id, label = check_feedback(await json_body(request, service.config.limits))
        return Saved(ok=True, id=await service.add_feedback(request_id, label))

    add_reads(app, service)
    return app


def add_reads(app: FastAPI, service: Service) -> None:
    """create_app's GET routes, after its POST ones (the order of /openapi.json's paths): what a probe, a monitor or
    a person reads."""
    from .demo import page

    @app.get(HEALTHZ, responses=answer(Health))
    async def healthz():
        # the answer a prediction gets now (a worker never started, stopped or dead), so a probe and a client agree
        service.check_started()
        if refusal := service.batcher.refusal:
            return await stopped(None, refusal)
        return Health(status="ok", bundle=service.bundle_name, queue=service.batcher.depth)

    # uptime monitors and `curl -I` probe with HEAD; a route of its own, as two methods would share an operationId
    app.add_api_route(HEALTHZ, healthz, methods=["HEAD"], include_in_schema=False)

    @app.get(INFO, responses=answer(Info))
    async def info():
        return service.info()

    @app.get(METRICS, response_class=PlainTextResponse)  # Prometheus' text format, as the schema says
    async def metrics():
        body, kind = service.metrics.render()
        return Response(body, media_type=kind)

    @app.get(PAGE, response_class=HTMLResponse)
    async def demo(request: Request):
        return page(public_path(request, ""))

    app.add_route(DOCS, docs, include_in_schema=False)  # GET and HEAD, as FastAPI's own
