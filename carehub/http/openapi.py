"""OpenAPI 3.1 document built from the route declarations (bodies from their msgspec types)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

import carehub

from .routing import RouteSpec

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


_STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted"}


def openapi_document(specs: Sequence[RouteSpec]) -> dict[str, Any]:
    bodies = sorted({s.body for s in specs if s.body is not None}, key=lambda t: t.__name__)
    answers = list(dict.fromkeys(s.response for s in specs if s.response is not None))
    schemas, components = msgspec.json.schema_components(
        [*bodies, *answers], ref_template="#/components/schemas/{name}")
    answer_schemas = dict(zip(answers, schemas[len(bodies):], strict=True))
    components = dict(components)
    components["Error"] = _ERROR
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if spec.body is None:
            continue
        schema = schemas[bodies.index(spec.body)]
        _operation(paths, spec)["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    for spec in specs:
        op = _operation(paths, spec)
        if spec.response is not None:
            schema = answer_schemas[spec.response]
            op["responses"][str(spec.status)]["content"] = {spec.content_type: {"schema": schema}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "CareHub", "version": carehub.__version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "partnerSignature": {
                    "type": "apiKey", "in": "header", "name": "X-CareHub-Signature",
                    "description": "HMAC-SM3 request signature, see docs/security.md",
                },
            },
        },
    }


def _operation(paths: dict[str, dict[str, Any]], spec: RouteSpec) -> dict[str, Any]:
    ops = paths.setdefault(spec.openapi_path, {})
    method = spec.method.lower()
    if method in ops:
        existing: dict[str, Any] = ops[method]
        return existing
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    responses: dict[str, Any] = {
        str(spec.status): {"description": _STATUS_TEXT.get(spec.status, "OK"),
                           "content": {spec.content_type: {"schema": {}}}},
        "400": {"description": "Bad request", **error},
        "422": {"description": "Invalid body", **error},
    }
    if spec.permission is not None:
        responses["401"] = {"description": "Not signed in", **error}
        responses["403"] = {"description": f"Needs permission {spec.permission}", **error}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in spec.path_params
    ] + [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in spec.query]
    op: dict[str, Any] = {
        "summary": spec.summary,
        "operationId": f"{spec.method.lower()}_{spec.openapi_path.strip('/').replace('/', '_') or 'root'}",
        "tags": [spec.tag],
        "responses": responses,
        "x-permission": spec.permission,
    }
    if parameters:
        op["parameters"] = parameters
    if spec.permission is not None:
        op["security"] = [{"bearer": []}]
    if spec.partner_op is not None:
        op["x-partner-operation"] = spec.partner_op
        op["security"] = [{"partnerSignature": []}]
        responses["401"] = {"description": "Unsigned, stale, replayed or badly signed", **error}
    ops[method] = op
    return op
