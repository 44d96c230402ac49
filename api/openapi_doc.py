"""The OpenAPI document, corrected in one place to say what the API really sends, so that
routes need no per-decorator error entries:

- 422 bodies are `{detail: [{field, message, type}]}` (api/errors.py, api/input_rules.py),
  not FastAPI's default `{detail: [{loc, msg, type}]}`;
- a route with a path parameter answers 404 `{detail: "..."}` for what it does not find;
- a route with parameters or a JSON body answers 422; one with a body, 413 past
  TRAINDOCK_MAX_SPEC_BYTES; every route, 503 while the database does not answer;
- every integer is within the 64-bit range, as api/input_rules.py enforces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from api.input_rules import INT64_MAX, INT64_MIN
from api.schemas import FieldError, ValidationErrorOut

FASTAPI_422 = "#/components/schemas/HTTPValidationError"
OUR_422 = "#/components/schemas/ValidationErrorOut"
MESSAGE = "#/components/schemas/MessageOut"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _replace_refs(node: Any, old: str, new: str) -> None:
    if isinstance(node, dict):
        if node.get("$ref") == old:
            node["$ref"] = new
        for value in node.values():
            _replace_refs(value, old, new)
    elif isinstance(node, list):
        for value in node:
            _replace_refs(value, old, new)


def _bound_integers(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            if "maximum" not in node and "exclusiveMaximum" not in node:
                node["maximum"] = INT64_MAX
            if "minimum" not in node and "exclusiveMinimum" not in node:
                node["minimum"] = INT64_MIN
        for value in node.values():
            _bound_integers(value)
    elif isinstance(node, list):
        for value in node:
            _bound_integers(value)


def _no_null_parameters(parameters: list[dict[str, Any]]) -> None:
    """FastAPI writes an optional query or header parameter as `anyOf: [T, null]`; a
    parameter is a string or absent, never JSON null, so clients sent the text "null"."""
    for parameter in parameters:
        schema = parameter.get("schema", {})
        options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
        if "anyOf" in schema and len(options) < len(schema["anyOf"]):
            del schema["anyOf"]
            if len(options) == 1:
                schema.update(options[0])
            else:
                schema["anyOf"] = options


def _without_auth(doc: dict[str, Any]) -> None:
    """With TRAINDOCK_AUTH=off no key is asked for: the schema says so (no security
    requirement, no 401), or a client that follows it would expect a 401 it never gets."""
    doc.get("components", {}).pop("securitySchemes", None)
    for operations in doc.get("paths", {}).values():
        for method, operation in operations.items():
            if method in METHODS:
                operation.pop("security", None)
                operation.get("responses", {}).pop("401", None)
                # No scope to lack, no key's rate to pass, and a read is never refused as
                # cross-site (a submission's 429 is the owner's job limit, which stays).
                if method in ("get", "head"):
                    operation.get("responses", {}).pop("403", None)
                    operation.get("responses", {}).pop("429", None)


def correct(doc: dict[str, Any], auth: bool = True) -> dict[str, Any]:
    if not auth:
        _without_auth(doc)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["FieldError"] = FieldError.model_json_schema()
    schemas["ValidationErrorOut"] = ValidationErrorOut.model_json_schema(
        ref_template="#/components/schemas/{model}")
    schemas["ValidationErrorOut"].pop("$defs", None)
    schemas["MessageOut"] = {"title": "MessageOut", "type": "object", "required": ["detail"],
                             "properties": {"detail": {"type": "string", "title": "Detail"}}}
    _replace_refs(doc, FASTAPI_422, OUR_422)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for operations in doc.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            responses = operation.setdefault("responses", {})
            parameters = operation.get("parameters", [])
            _no_null_parameters(parameters)
            if any(p.get("in") == "path" for p in parameters):
                responses.setdefault("404", _json(MESSAGE, "not found"))
            if parameters or "requestBody" in operation:
                responses.setdefault("422", _json(OUR_422, "the field to change"))
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                responses.setdefault("413", _json(MESSAGE, "the body is larger than "
                                                  "TRAINDOCK_MAX_SPEC_BYTES"))
            responses.setdefault("503", _json(MESSAGE, "the database is not answering; "
                                              "retry after Retry-After seconds"))
    _bound_integers(doc)
    return doc


def install_openapi(app: FastAPI) -> None:
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        doc = original()
        return correct(doc, app.state.settings.auth) if fresh else doc

    app.openapi = openapi  # type: ignore[method-assign]
