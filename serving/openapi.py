"""The service's OpenAPI document, built from the same pydantic models that validate the
requests and shape the answers, so the document is what the service does.

BentoML's own document flattens nullable fields to their non-null type, declares error
bodies that its answers do not have, carries BentoML's boilerplate as title and description,
no security scheme, and the API's upper limits instead of the configured ones. This one is
OpenAPI 3.1 (JSON Schema as pydantic writes it), with the bearer scheme, the one error shape
(serving.schemas.ErrorBody) on every error status, the configured limits, and the live
release's features and targets.
"""

from __future__ import annotations

import copy
from importlib import metadata
from typing import Any

from serving.schemas import ErrorBody
from serving.settings import ServingSettings

REF = "#/components/schemas/{model}"
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
DESCRIPTION = """Scores, explanations and ranked segments of a shop's customers: who buys
again, who becomes a VIP, why, and who is in which campaign list.

Every operation needs `Authorization: Bearer <token>` (the button "Authorize" above) except
/livez and /readyz and this document. Every error answer is `{"error": "<what is wrong>"}`,
naming the field when a field is wrong. Limits come from the project's `serving` settings."""

# Error statuses every operation can answer, and what they mean there.
COMMON_ERRORS = {
    "400": "invalid request: the message names the field",
    "401": "missing or wrong bearer token",
    "413": "request body larger than serving.max_body_bytes",
    "415": "request body not application/json",
    "500": "server error (the server log has the details)",
}
NOT_FOUND = {
    "explain": "unknown customer id, or a target the live release has no model for",
    "segment_members": "unknown segment name",
}


def version() -> str:
    try:
        return metadata.version("dangol")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class Document:
    """The document for a service class: built once, then adapted to the live release."""

    def __init__(self, service: Any, settings: ServingSettings) -> None:
        self.settings = settings
        self.base = _build(service, settings)
        self._cache: tuple[tuple, dict] | None = None

    def for_release(self, features: list[str], targets: list[str]) -> dict:
        """The document with /score_rows' features and /explain's targets of the live
        release (required and only these)."""
        key = (tuple(features), tuple(targets))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, _with_release(self.base, features, targets))
        return self._cache[1]


def _error_responses(name: str) -> dict[str, Any]:
    statuses = dict(COMMON_ERRORS)
    if name in NOT_FOUND:
        statuses["404"] = NOT_FOUND[name]
    return {
        status: {"description": text, "content": {"application/json": {"schema": ERROR_REF}}}
        for status, text in sorted(statuses.items())
    }


def _schema(model: Any, mode: str, components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF, mode=mode)
    components.update(schema.pop("$defs", {}))
    return schema


def _build(service: Any, settings: ServingSettings) -> dict[str, Any]:
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for name, method in service.apis.items():
        request = _schema(method.input_spec, "validation", components)
        request["title"] = f"{name} request"
        answer = _schema(method.output_spec, "serialization", components)
        answer["title"] = f"{name} answer"
        doc = " ".join((method.func.__doc__ or name).split())
        paths[method.route] = {
            "post": {
                "operationId": name,
                "summary": doc.split(". ")[0].rstrip("."),
                "description": doc,
                "tags": ["scoring"],
                "requestBody": {
                    # an endpoint without required fields answers a request without a body
                    "required": bool(request.get("required")),
                    "content": {"application/json": {"schema": request}},
                },
                "responses": {
                    "200": {
                        "description": "the answer",
                        "content": {"application/json": {"schema": answer}},
                    },
                    **_error_responses(name),
                },
            }
        }
    components["ErrorBody"] = ErrorBody.model_json_schema(ref_template=REF)
    _apply_limits(paths, settings)
    text = {"text/plain": {"schema": {"type": "string"}}}
    health = {"tags": ["health"], "security": []}
    paths["/livez"] = {
        "get": {
            **health,
            "summary": "alive",
            "responses": {"200": {"description": "the server process answers", "content": text}},
        }
    }
    paths["/readyz"] = {
        "get": {
            **health,
            "summary": "ready to serve",
            "responses": {
                "200": {"description": "the service is ready", "content": text},
                "503": {
                    "description": "not ready yet",
                    "content": {"application/json": {"schema": ERROR_REF}},
                },
            },
        }
    }
    paths["/metrics"] = {
        "get": {
            "tags": ["health"],
            "summary": "Prometheus metrics",
            "responses": {
                "200": {"description": "metrics in Prometheus' text format", "content": text},
                "401": {
                    "description": COMMON_ERRORS["401"],
                    "content": {"application/json": {"schema": ERROR_REF}},
                },
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dangol scoring service",
            "version": version(),
            "description": DESCRIPTION,
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "serving.token / DANGOL_TOKEN",
                }
            },
        },
        "security": [{"bearer": []}],
    }


def _request_properties(paths: dict[str, Any], route: str) -> dict[str, Any]:
    content = paths[route]["post"]["requestBody"]["content"]["application/json"]
    return content["schema"]["properties"]


def _apply_limits(paths: dict[str, Any], settings: ServingSettings) -> None:
    """The configured limits instead of the API's upper bounds."""
    for route, field in (("/score", "customer_ids"), ("/score_rows", "rows")):
        if route in paths:
            _request_properties(paths, route)[field]["maxItems"] = settings.max_batch
    if "/segment_members" in paths:
        limit = _request_properties(paths, "/segment_members")["limit"]
        for option in limit.get("anyOf", [limit]):
            if option.get("type") == "integer":
                option["maximum"] = settings.max_page


def _with_release(base: dict[str, Any], features: list[str], targets: list[str]) -> dict:
    document = copy.deepcopy(base)
    schemas = document["components"]["schemas"]
    if "Features" in schemas:
        row = schemas["Features"]
        wanted = list(dict.fromkeys(["tier", *features]))
        row["properties"] = {k: v for k, v in row["properties"].items() if k in wanted}
        row["required"] = [k for k in wanted if k in row["properties"]]
    explain = document["paths"].get("/explain")
    if explain is not None:
        target = _request_properties(document["paths"], "/explain")["target"]
        for option in target.get("anyOf", [target]):
            if "enum" in option:
                option["enum"] = [t for t in option["enum"] if t in targets]
    return document
