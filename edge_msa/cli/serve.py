"""`edge-msa serve BUNDLE`: a REST service around one bundle (FastAPI + uvicorn; pip install "edge-msa[serve]")."""
from __future__ import annotations

import argparse
import re
import socket
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # fastapi is the [serve] extra: imported by run, once require() found it
    from ..serve.app import Service

from ..features import MEDIA_FLAG

# what stops the server, each through the same drain (serve_until_stopped): the epilog and --drain-s say it alike
STOPS = "Ctrl-C, SIGTERM or a batch worker dead on a bug"
EPILOG = """examples:
  edge-msa serve runs/mosi/bundles/student-int8                      # http://127.0.0.1:8000/ (demo page)
  edge-msa serve bundle/ --port 9000 --feedback feedback.sqlite      # keep users' labels
  edge-msa serve bundle/ --max-batch 1                               # batching off
  edge-msa serve bundle/ --root-path /msa     # behind nginx's location /msa/ { proxy_pass http://127.0.0.1:8000/; }
  curl -s localhost:8000/v1/predict -H 'content-type: application/json' -d '{"text": "what a wonderful film"}'
  curl -s localhost:8000/v1/predict -F text="not my thing"                      # multipart form
  curl -s localhost:8000/v1/predict -F text="not my thing" -F video=@clip.mp4   # a bundle on our own front ends
  ID=$(curl -s localhost:8000/v1/predict -F text="so good" \\
       | python3 -c 'import json, sys; print(json.load(sys.stdin)["request_id"])')       # the id to label
  curl -s localhost:8000/v1/feedback -H 'content-type: application/json' -d "{\\"request_id\\":\\"$ID\\",\\"label\\":2}"

routes: POST /v1/predict (JSON {"text", "audio", "video"}: a string, (L, d) arrays or base64 WAV/video; or a
multipart form), POST /v1/predict/batch ({"inputs": [...]}), POST /v1/feedback, GET /healthz, GET /v1/info,
GET /metrics (Prometheus), GET /openapi.json and /docs (the request bodies, with this bundle's dims and limits,
and each answer's fields), GET / (demo page). Errors are {"error": "..."} with a 4xx status; beyond --max-queue
waiting inputs the answer is 429 with Retry-After.
""" + f"""{STOPS} stops the server: in-flight requests finish (--drain-s), then
it exits 0, or 1 after the worker's death, for a supervisor to restart it.
There is no authentication: it binds 127.0.0.1 unless you pass --host.
"""


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")  # uvicorn's
# --root-path: "/" before each path segment of ASCII letters, digits and . _ ~ - (RFC 3986's unreserved characters).
# uvicorn puts the prefix before each request's raw path as ASCII (a non-ASCII one closed every connection with a
# traceback), a trailing "/" doubled into every path (/msa//v1/predict), a %-escape would reach the page's links
# escaped but the routes decoded, a "." or ".." segment is resolved away by the browser (the page at /msa/.. called
# /v1/predict, outside the proxy), and starlette 0.35-0.37 (what fastapi>=0.110 allows) builds a regex from the root
# path (starlette #2599), so ( ) * + $ in a prefix would break its routing and /metrics' route names
ROOT_PATH = re.compile(r"(/(?!\.\.?(/|$))[\w.~-]+)+", re.ASCII)
# Limits' fields, the flags that set them (shorter than the keywords) and what they count; messages name the flag.
# The media limit is predict's and featurize's flag too, defined once (cli.add_media_limit_flag): what it does here
LIMIT_FLAGS = {"max_body_bytes": ("--max-body", "bytes per request"),
               "max_text_chars": ("--max-text", "characters of text"),
               **{knob: (flag, "refused before decoding with a 413") for knob, flag in MEDIA_FLAG.items()},
               "max_steps": ("--max-steps", "rows L of a feature array"),
               "max_items": ("--max-items", "inputs per batch request"),
               "body_timeout_s": ("--body-timeout-s", "seconds a request body may pause (no new byte) before its "
                                  "client is answered 408 (413 if its size is already over --max-body) and the "
                                  "connection closed"),
               "body_deadline_s": ("--body-deadline-s", "seconds a whole request body may take, from its header, "
                                   "before its client is answered 408 (413 if its size is already over "
                                   "--max-body) and the connection closed; the default "
                                   "--max-body takes 67 s at a slow 1 Mbit/s"),
               "header_timeout_s": ("--header-timeout-s", "seconds a client has to send a whole request header, "
                                    "from connecting or from its previous answer, before its connection is closed "
                                    "(with a 408 if a request had begun)")}


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..serve.config import ServeConfig
    from . import Typed, add_media_limit_flag, one_of

    c = ServeConfig(bundle="")
    d = c.limits
    p = subparsers.add_parser("serve", help="serve a bundle over HTTP (REST + demo page + feedback log)",
                              description="Load a bundle once and serve predictions over HTTP, micro-batched.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle directory from `edge-msa export`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the "
                   "service, which has no authentication, to the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-batch", type=int, default=c.max_batch,
                   help=f"inputs per runtime call (1 = batching off; default {c.max_batch})")
    p.add_argument("--max-wait-ms", type=Typed, default=c.max_wait_ms, help="after a first input, wait this long for "
                   f"more (default {c.max_wait_ms:g}: run what queued while the previous call ran)")
    p.add_argument("--max-queue", type=int, default=c.max_queue,
                   help=f"waiting inputs before 429 (default {c.max_queue})")
    p.add_argument("--feedback", default=None, help="SQLite feedback log to append to (default: feedback off)")
    p.add_argument("--remember", type=int, default=c.remember,
                   help=f"recent predictions feedback may name (default {c.remember})")
    for name, (flag, what) in LIMIT_FLAGS.items():
        if name in MEDIA_FLAG:
            add_media_limit_flag(p, what)
            continue
        default = getattr(d, name)
        shown = f"{default:g}" if isinstance(default, float) else default
        p.add_argument(flag, dest=name, metavar=flag[2:].upper().replace("-", "_"), type=type(default),
                       default=default, help=f"{what} (default {shown})")
    p.add_argument("--threads", type=int, default=c.threads, help="ONNX Runtime intra-op threads per session "
                   "(default 1: the service overlaps requests itself; ORT's own pool spins and cost 2-3x the server "
                   "CPU per request in the README's load test); 0 = ONNX Runtime's default")
    p.add_argument("--drain-s", type=Typed, default=7.0, help=f"once {STOPS} stops the server, wait this long for "
                   "in-flight requests (default 7; with the worker's final 2 s the exit comes within 10 s)")
    p.add_argument("--log-level", default="info", **one_of(LOG_LEVELS), help="uvicorn's log level (default: info)")
    p.add_argument("--root-path", default="", metavar="PREFIX", help="the path a reverse proxy serves the service "
                   "under and strips from each request (nginx: location /msa/ { proxy_pass http://127.0.0.1:8000/; }): "
                   "the demo page, /docs, /openapi.json's servers and 404 answers name their routes under it, while "
                   "requests still come without it (default: none, served at /)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import EdgeMSAError, check_range, checked_threads, named_as_flags, require
    from ..serve import SERVE_FIX

    for module in ("fastapi", "uvicorn", "prometheus_client", "python_multipart"):
        require(module, "edge-msa serve", SERVE_FIX)
    from ..serve.app import Service
    from ..serve.config import Limits, ServeConfig

    check_root_path(args.root_path)
    knobs = ["port", "remember", "drain_s", "threads", "max_batch", "max_wait_ms", "max_queue"]
    with named_as_flags(knobs, spelled={name: flag for name, (flag, _) in LIMIT_FLAGS.items()}):
        # 0: any free port (address() says which)
        check_range({"port": args.port}, 0, strict=False, whole=True, top=65535, why="0: any free port")
        check_range({"drain_s": args.drain_s}, 0, strict=False)
        limits = Limits(**{name: getattr(args, name) for name in LIMIT_FLAGS})
        threads = checked_threads(args.threads)
        # ServeConfig checks --remember, MicroBatcher the batching knobs (Python callers get the same checks)
        service = Service(ServeConfig(args.bundle, threads, args.max_batch, args.max_wait_ms,
                                      args.max_queue, args.feedback, args.remember, limits))
    try:  # the warm-up refuses a bundle that scores no number (BrokenModel): not served with a 200 /healthz
        service.warm_up()
        sock = listen(args.host, args.port)
    except EdgeMSAError:
        service.close()
        raise
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(f"warning: --host {args.host} serves to the network; edge-msa serve has no authentication\n")
    if args.log_level in ("info", "debug"):
        sys.stderr.write(f"serving {args.bundle} on {address(args.host, sock)} ({where_page(args.root_path)}; "
                         "Ctrl-C or SIGTERM stops)\n")
    return serve_until_stopped(service, sock, args)


def serve_until_stopped(service: Service, sock: socket.socket, args: argparse.Namespace) -> int:
    """Run uvicorn on `sock` until SIGTERM / Ctrl-C (exit code 0) or until the batch worker dies on a bug (1).

    A dead worker leaves a process that answers every prediction and /healthz with 503 for ever, and supervisors
    (systemd Restart=on-failure, Docker restart policies, Kubernetes without a liveness probe) restart only a process
    that exits: so its death asks uvicorn to stop (Server.should_exit, what uvicorn's own signal handlers set; read
    on uvicorn's loop, so setting it from the worker thread is enough), with the same drain as SIGTERM, and the exit
    is one `error:` line and exit code 1, as uvicorn and gunicorn exit when a worker cannot serve (not 2: the
    user's input was fine).

    uvicorn's limit_concurrency stays unset (no --max-connections): it refuses no connection, only each request that
    arrives while N connections are open, with a plain-text 503 outside the service's {"error"} answers and without
    Retry-After, so N clients that connect and send nothing (each held up to --header-timeout-s: see
    serve.connections) would make every other client's request that 503 meanwhile. --max-queue (429) bounds the
    model's work; the number of connections is a reverse proxy's to bound (nginx's limit_conn). Websockets are off
    (ws="none"): the service has no websocket route, and a connection upgraded to one would leave the header
    deadline's protocol, which would then close it."""
    import signal

    import uvicorn

    from ..serve.app import create_app
    from ..serve.connections import http_protocol

    config = uvicorn.Config(create_app(service), host=args.host, port=args.port, log_level=args.log_level,
                            access_log=False, timeout_graceful_shutdown=args.drain_s, server_header=False,
                            http=http_protocol(service.config.limits.header_timeout_s, service.metrics),
                            ws="none", root_path=args.root_path)
    server = uvicorn.Server(config)
    service.batcher.on_death = lambda: setattr(server, "should_exit", True)
    # uvicorn drains on SIGTERM and on Ctrl-C (SIGINT), then re-raises the signal to the handler that was there
    # before it; these make that a normal exit (0) instead of death by signal, or, for Ctrl-C, a KeyboardInterrupt
    # that ended a clean drain with `error: interrupted` and exit code 130.
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGINT, previous)
    if service.batcher.died:
        sys.stderr.write(f"error: stopped serving: {service.batcher.died}; expected a restart by the service's "
                         "supervisor (exit code 1)\n")
        return 1
    return 0


def check_root_path(prefix: str) -> None:
    """--root-path as ROOT_PATH says, refused before the bundle loads: a prefix uvicorn cannot put before a path
    would close every connection, and "msa" or "/msa/" would have the page call paths the proxy does not serve."""
    from ..errors import InputError

    if prefix and not ROOT_PATH.fullmatch(prefix):
        raise InputError(f"--root-path '{prefix[:100]}'; expected a path prefix such as /msa: a / before each segment, "
                         "none at the end, no . or .. segment, each of ASCII letters, digits and . _ ~ - only")


def address(host: str, sock: socket.socket) -> str:
    """The URL a client opens: uvicorn logs none when it is handed a bound socket, so without this line the user
    of `--port 0` (or anyone reading the log) could not tell where the service is."""
    return f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}/"


def where_page(root_path: str) -> str:
    """Where the demo page is, for the start-up line: behind a proxy (--root-path) the page opened at this address
    calls its routes under the prefix, which only the proxy answers, so the line sends the user to the proxy."""
    return f"demo page through the proxy, under {root_path}/" if root_path else "demo page"


def listen(host: str, port: int) -> socket.socket:
    """The service's listening socket, bound here rather than by uvicorn, which answers a busy port or an unknown
    host with log lines and exit code 1 or 3 instead of one `error:` line and exit code 2."""
    from ..errors import InputError

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); expected a free port on an "
                         "address of this machine") from None
