"""The HTTP protocol `edge-msa serve` runs: uvicorn's h11 protocol with a deadline on each request's header.

uvicorn (0.29 to 0.55 checked) times nothing before a request's header is complete: its keep-alive timer starts only
after an answer, and the first byte of the next request stops it. So a client that connected and sent nothing, or half a
request line or header and stopped, held its connection (a file descriptor, a protocol object) for ever, and a few
hundred such (a kiosk app that leaks connections, or anyone on the network) exhausted the worker's descriptors.
nginx (client_header_timeout) and Apache (mod_reqtimeout header=) bound that time; here --header-timeout-s does.
"""
from __future__ import annotations

import asyncio
import http
import operator

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from ..errors import warn
from .app import error
from .metrics import ServiceMetrics

# what HeaderDeadline takes of uvicorn's H11Protocol: the methods it extends, and the attributes it reads that a fresh
# protocol has (it also reads cycle.response_complete, which exists only once a request came); checked as the server
# starts (http_protocol), as uvicorn's own h11_impl may rename any of them in a release setup.py does not exclude
EXTENDED = ("connection_made", "data_received", "on_response_complete", "connection_lost")
READ = ("conn", "cycle", "transport", "loop", "server_state.default_headers")


class HeaderDeadline(H11Protocol):
    """uvicorn's H11Protocol, closing a connection whose next request's header is not whole `header_timeout_s` after
    the connection opened or its previous answer went out: with a 408 where a request had begun (as Apache's
    mod_reqtimeout answers), silently where nothing came (as nginx closes it: a browser's idle pre-opened connection
    is no error to show).

    A deadline for the whole header, not a timeout per pause as for the body (read_body): a header is a few hundred
    bytes, so its sender has no slow upload to finish, and a client that trickled a byte per pause would otherwise
    hold its connection for days (h11 reads up to 16 KiB of header). While the app answers a request, the deadline
    is off: the body's pace is --body-timeout-s's and --body-deadline-s's, the answer's time the model's.

    Extends connection_made, data_received, on_response_complete and connection_lost (EXTENDED), and reads uvicorn's
    private `conn` (the h11.Connection), `cycle` (the request in progress), `transport`, `loop` and `server_state` (its
    default headers: the Date every answer carries); all the same, in name and meaning, in uvicorn 0.29 (setup.py's
    minimum), 0.30, 0.32 and 0.55 (read in each release's h11_impl.py and server.py; this module's tests pass on
    each), and tests/test_serve_units.py fails if one changes; a uvicorn without one (READ lists the attributes)
    runs plain H11Protocol (http_protocol), so a rename costs the header deadline, not every connection. h11 rather
    than httptools, which uvicorn's "auto" picked where httptools was installed (edge-msa[serve] does not install
    it): one protocol, the one the tests run.
    """

    header_timeout_s: float  # set by with_timeout: uvicorn builds the protocol itself, from its class
    metrics: ServiceMetrics  # the service's, where each close is counted (no request reaches the app to count it)
    deadline: asyncio.TimerHandle | None = None

    @classmethod
    def with_timeout(cls, seconds: float, metrics: ServiceMetrics) -> type[HeaderDeadline]:
        """The protocol class for uvicorn.Config(http=...), with the server's --header-timeout-s and metrics."""
        return type(cls.__name__, (cls,), {"header_timeout_s": seconds, "metrics": metrics})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # narrowed as uvicorn's
        super().connection_made(transport)
        self.watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.watch()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.stop()

    def watch(self) -> None:
        """Start the deadline once the connection waits for a request header (it just opened, or the app's answer is
        complete); stop it once a header is whole (the app answers the request) or the connection is closing. Not
        restarted by bytes that come: the deadline is for the whole header."""
        waiting = self.cycle is None or self.cycle.response_complete
        if not waiting or self.transport.is_closing():
            self.stop()
        elif self.deadline is None:
            self.deadline = self.loop.call_later(self.header_timeout_s, self.expire)

    def stop(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def expire(self) -> None:
        """Close the connection; first answer 408 where a request had begun (bytes of it wait in h11's buffer, and
        no answer has started: h11's `our_state` is IDLE until a request's header is whole). Counted on /metrics
        (edge_msa_header_timeouts), not logged: a slowloris client or a leaking one would fill the log, and a
        count tells them from a quiet service."""
        self.deadline = None
        begun = self.conn.our_state is h11.IDLE and bool(self.conn.trailing_data[0])
        self.metrics.observe_header_timeout(begun)
        if begun:
            s = self.header_timeout_s
            answer = error(408, f"request header incomplete after {s:g} s; expected a whole request header within "
                                f"{s:g} s of connecting or of the previous answer")
            headers = [*self.server_state.default_headers, *answer.raw_headers, (b"connection", b"close")]
            for event in (h11.Response(status_code=408, headers=headers, reason=http.HTTPStatus(408).phrase),
                          h11.Data(data=bytes(answer.body)), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def http_protocol(header_timeout_s: float, metrics: ServiceMetrics) -> type[H11Protocol]:
    """The protocol class for uvicorn.Config(http=...): HeaderDeadline, or plain H11Protocol with one warning where
    this uvicorn lacks a name HeaderDeadline needs. setup.py bounds uvicorn from below only, and a release that
    renamed one would otherwise fail every connection with a traceback; without the deadline it serves, and
    --body-timeout-s and --body-deadline-s still bound each body (they are the app's, not the protocol's)."""
    missing = missing_internals()
    if not missing:
        return HeaderDeadline.with_timeout(header_timeout_s, metrics)
    warn(f"uvicorn {uvicorn.__version__}'s H11Protocol has no {', '.join(missing)}, which the header deadline needs: "
         "--header-timeout-s is off (--body-timeout-s and --body-deadline-s still apply); expected a uvicorn "
         "that has them (0.29 to 0.55 checked)")
    return H11Protocol


def missing_internals() -> list[str]:
    """The names of EXTENDED and READ this uvicorn's H11Protocol lacks. A method counts as missing where only
    asyncio.Protocol's no-op is left, which super() would call in uvicorn's stead; the attributes are read on a fresh
    protocol (no connection made), built inside a loop of its own since H11Protocol takes the running loop, which
    uvicorn starts only after this check."""
    missing = [name for name in EXTENDED
               if getattr(H11Protocol, name, None) in (None, getattr(asyncio.Protocol, name, None))]

    async def fresh() -> H11Protocol:
        config = uvicorn.Config(noop_app, http="h11", ws="none", log_config=None)
        return H11Protocol(config=config, server_state=ServerState(), app_state={})

    try:
        protocol = asyncio.run(fresh())
    except TypeError:  # a constructor that takes other arguments: none of its attributes can be checked
        return [*missing, "__init__(config, server_state, app_state)"]
    for name in READ:
        try:
            operator.attrgetter(name)(protocol)
        except AttributeError:
            missing.append(name)
    return missing


async def noop_app(scope: dict, receive: object, send: object) -> None:
    """The app of the protocol missing_internals builds: it takes no request."""
