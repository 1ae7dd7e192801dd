"""What /openapi.json (and the /docs page drawn from it) says of the POST routes, made from the bundle's feature spec
and the service's limits, so a client generated from it sends what this service takes.

The handlers read the raw request (JSON or a multipart form, checked by serve.inputs, whose refusals are one line
each), so FastAPI has no model to infer a body from: without these the schema showed the routes with no body at all.
"""
from __future__ import annotations

import html
from typing import Any

from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.requests import Request

from ..features import seconds_text
from ..labels import SCORE_LIMIT
from ..spec import MODALITIES, FeatureSpec
from .config import Limits

DESCRIPTION = ("A multimodal sentiment model (text, audio, video -> a score in [-3, 3]) served by `edge-msa serve`. "
               "Every refusal is `{\"error\": \"<what was wrong>; expected <what>\"}` with a 4xx status. This page "
               "draws Swagger UI from a CDN in your browser; /openapi.json itself is served by the device.")
ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
         "properties": {"error": {"type": "string", "description": "one line: what was wrong; expected what"}}}
ERRORS = {code: {"description": why, "content": {"application/json": {"schema": ERROR}}}
          for code, why in (("4XX", "refused: a malformed or oversized request (429: busy, see Retry-After)"),
                            ("503", "not now: shutting down, the feedback log is busy, or a media extra is missing"))}


async def docs(request: Request) -> HTMLResponse:
    """/docs: FastAPI's Swagger UI page (as its docs_url serves it) plus a line shown when its script, drawn from a
    CDN, did not load. On a device without internet (a kiosk, a robot) the page was blank, while the schema it draws
    is served here. No installed package ships Swagger UI's files, so the page cannot draw it from the device."""
    url = request.scope.get("root_path", "").rstrip("/") + request.app.openapi_url
    page = get_swagger_ui_html(openapi_url=url, title=f"{request.app.title} - Swagger UI").body.decode()
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
    bodies = {"/v1/predict": {"application/json": one,
                              **({"multipart/form-data": {"type": "object", "properties": form}} if form else {})},
              "/v1/predict/batch": {"application/json": batch}, "/v1/feedback": {"application/json": feedback}}
    summaries = {"/v1/predict": "Score one input (JSON or a multipart form)",
                 "/v1/predict/batch": f"Score 1 to {limits.max_items} inputs in one request",
                 "/v1/feedback": "Log the user's label for a served prediction (--feedback)"}
    return {path: {"summary": summaries[path], "responses": ERRORS,
                   "requestBody": {"required": True, "content": {kind: {"schema": schema}
                                                                 for kind, schema in body.items()}}}
            for path, body in bodies.items()}
