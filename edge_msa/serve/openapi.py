"""What /openapi.json (and the /docs page drawn from it) says of the routes: the POST bodies, made from the bundle's
feature spec and the service's limits, so a client generated from it sends what this service takes, and each route's
200 answer, typed by the classes the handlers build it with.

The handlers read the raw request (JSON or a multipart form, checked by serve.inputs, whose refusals are one line
each), so FastAPI has no model to infer a body from: without these the schema showed the routes with no body at all.
The answers are declared as `responses={200: {"model": ...}}`, not `response_model`: FastAPI would validate and
re-serialise every answer through pydantic, which writes inf and NaN otherwise than edge_msa.jsonio (and costs time
per request); the handlers' dicts are written by the app's StrictJSONResponse as before. For the same reason the route
handlers have no return annotation: FastAPI takes one as the route's response_model.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from pydantic import ConfigDict, GetPydanticSchema, with_config
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.types import Scope
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict only from Python 3.12

from ..features import seconds_text
from ..labels import SCORE_LIMIT
from ..runtime.predictor import Prediction
from ..spec import MODALITIES, FeatureSpec
from .config import Limits
from .routes import FEEDBACK, PREDICT, PREDICT_BATCH

DESCRIPTION = ("A multimodal sentiment model (text, audio, video -> a score in [-3, 3]) served by `edge-msa serve`. "
               "Every refusal is `{\"error\": \"<what was wrong>; expected <what>\"}` with a 4xx status. This page "
               "draws Swagger UI from a CDN in your browser; /openapi.json itself is served by the device.")
ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
         "properties": {"error": {"type": "string", "description": "one line: what was wrong; expected what"}}}
ERRORS = {code: {"description": why, "content": {"application/json": {"schema": ERROR}}}
          for code, why in (("4XX", "refused: a malformed or oversized request (429: busy, see Retry-After)"),
                            ("500", "the bundle's model is broken (it scored no number) or the service has a bug"),
                            ("503", "not now: shutting down, the feedback log is busy, or a media extra is missing"))}

# every field is in every answer, defaults included: a client generator should not make the fields optional (nor
# does the schema show the defaults: see Documented)
ANSWER = ConfigDict(json_schema_serialization_defaults_required=True)


@with_config(ANSWER)
@dataclass
class Served(Prediction):
    """/v1/predict's answer: the runtime's Prediction, and the id /v1/feedback names it by."""

    # every answer carries it (Service.predict passes it) and ANSWER marks it required in the schema; the default is
    # there because a field after Prediction's defaulted ones needs one where dataclass has no kw_only (Python 3.9)
    request_id: str = ""


def shaped_as(model: type) -> GetPydanticSchema:
    """A dict field's schema, and its validation, as `model`'s: the handlers send the fields of a dataclass as a
    plain dict (vars or asdict, which the JSON writer takes), and the type says so while the schema still names the
    class."""
    return GetPydanticSchema(lambda _source, handler: handler(model))


class Batch(TypedDict):
    """/v1/predict/batch's answer: one prediction per input, in the order sent."""

    results: list[Annotated[dict[str, Any], shaped_as(Served)]]


class Saved(TypedDict):
    """/v1/feedback's answer, sent once the label is durable in the log: `id` is its row."""

    ok: Literal[True]
    id: int


class Health(TypedDict):
    """/healthz's answer while predictions are taken (otherwise the 503 a prediction would get)."""

    status: Literal["ok"]
    bundle: str
    queue: int


@with_config(ANSWER)
class Settings(TypedDict):
    """How the service batches and what one request may carry."""

    max_batch: int
    max_wait_ms: float
    max_queue: int
    feedback: bool
    limits: Annotated[dict[str, Any], shaped_as(Limits)]


class Info(TypedDict):
    """/v1/info's answer: the bundle's manifest.json, less the exporting machine's paths, and the service's settings."""

    edge_msa: str
    bundle: str
    manifest: dict[str, Any]
    service: Settings


class Documented(FastAPI):
    """The service's app: FastAPI's, with /openapi.json's answer schemas (its components: the request bodies are
    inline, see operations) stripped of pydantic's `default`s. Every field is in every answer (ANSWER), so a default
    says nothing of it, and a reader took one for the value: the Limits under /v1/info's `service` published the
    library's `max_text_chars` default 2000 for a server run with `--max-text 500`. This server's values are in
    /v1/info's answer itself and in the request bodies' schemas."""

    def openapi(self) -> dict[str, Any]:
        doc = super().openapi()  # built once and cached by FastAPI; dropping a default twice is harmless
        for schema in doc.get("components", {}).get("schemas", {}).values():
            for field in schema.get("properties", {}).values():
                field.pop("default", None)
        return doc


def answer(model: type) -> dict[int | str, dict[str, Any]]:
    """A route's `responses`: its 200 body typed by `model` in the schema alone (see the module's docstring)."""
    return {200: {"model": model}}


def public_path(request: Request, path: str) -> str:
    """`path`, one of the app's routes, as a client calls it: under the prefix the app is mounted at (its root_path,
    as a parent app's mount or uvicorn's --root-path sets it; "" when served alone). FastAPI's own /openapi.json and
    /docs take root_path so; a page or message naming the bare route sent a mounted app's client to the parent's."""
    return request.scope.get("root_path", "").rstrip("/") + path


def route_path(scope: Scope) -> str:
    """public_path's inverse: the route a request's path names, read by the router's own rule (so /metrics counts a
    request by the route that answered it). Stripping root_path as a string counted a request the router served as
    "other" where the server had not put the prefix before the path (starlette's TestClient, FastAPI's root_path):
    root_path /m made /metrics "etrics". The rule is starlette's _utils.get_route_path (private, its router's since
    0.35; fastapi>=0.110 needs >= 0.36.3): its rule changed between versions, and the count follows the router's."""
    return get_route_path(scope)


async def docs(request: Request) -> HTMLResponse:
    """/docs: FastAPI's Swagger UI page (as its docs_url serves it) plus a line shown when its script, drawn from a
    CDN, did not load. On a device without internet (a kiosk, a robot) the page was blank, while the schema it draws
    is served here. No installed package ships Swagger UI's files, so the page cannot draw it from the device."""
    url = public_path(request, request.app.openapi_url)
    page = bytes(get_swagger_ui_html(openapi_url=url, title=f"{request.app.title} - Swagger UI").body).decode()
    link = html.escape(url)
    offline = (f'<p id="offline" hidden>Swagger UI did not load: this page draws it from a CDN, which your browser '
               f'could not reach. The schema it shows is served by this device: <a href="{link}">{link}</a> (any '
               'OpenAPI viewer or client generator reads it).</p>\n<script>if (typeof SwaggerUIBundle === '
               '"undefined") document.getElementById("offline").hidden = false;</script>\n')
    return HTMLResponse(page.replace("</body>", f"{offline}</body>", 1))


def text_schema(limits: Limits) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limits.max_text_chars}


def input_schema(spec: FeatureSpec, limits: Limits) -> dict[str, Any]:
    """One input: each modality an (L, d) array with the bundle's d, or, where the bundle has its own front end,
    the text or a base64 media file."""
    fields = {}
    for m in MODALITIES:
        d = spec.dim(m)
        forms: list[dict[str, Any]] = [{"type": "array", "minItems": 1, "maxItems": limits.max_steps,
                                        "description": f"(L, {d}) features",
                                        "items": {"type": "array", "minItems": d, "maxItems": d,
                                                  "items": {"type": "number"}}}]
        if spec.computes(m) and m == "text":
            forms.append(text_schema(limits))
        elif spec.computes(m):
            forms.append({"type": "string", "contentEncoding": "base64", "description": "a base64 media file (a "
                          f"data: URL too) of at most {seconds_text(limits.max_media_seconds)} s"})
        fields[m] = {"oneOf": forms}
    return {"type": "object", "properties": fields, "minProperties": 1, "additionalProperties": False}


def operations(spec: FeatureSpec, limits: Limits) -> dict[str, dict[str, Any]]:
    """The `openapi_extra` of each POST route: its request body and its {"error": ...} answers."""
    one = input_schema(spec, limits)
    form = {m: text_schema(limits) if m == "text" else {"type": "string", "format": "binary"}
            for m in MODALITIES if spec.computes(m)}
    batch = {"type": "object", "required": ["inputs"], "additionalProperties": False,
             "properties": {"inputs": {"type": "array", "items": one, "minItems": 1, "maxItems": limits.max_items}}}
    feedback = {"type": "object", "required": ["request_id", "label"], "additionalProperties": False,
                "properties": {"request_id": {"type": "string", "minLength": 1},
                               "label": {"type": "number", "minimum": -SCORE_LIMIT, "maximum": SCORE_LIMIT}}}
    bodies = {PREDICT: {"application/json": one,
                        **({"multipart/form-data": {"type": "object", "properties": form}} if form else {})},
              PREDICT_BATCH: {"application/json": batch}, FEEDBACK: {"application/json": feedback}}
    summaries = {PREDICT: "Score one input (JSON or a multipart form)",
                 PREDICT_BATCH: f"Score 1 to {limits.max_items} inputs in one request",
                 FEEDBACK: "Log the user's label for a served prediction (--feedback)"}
    return {path: {"summary": summaries[path], "responses": ERRORS,
                   "requestBody": {"required": True, "content": {kind: {"schema": schema}
                                                                 for kind, schema in body.items()}}}
            for path, body in bodies.items()}
