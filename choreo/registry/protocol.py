"""Confluent REST protocol details: media type, request bodies, error responses.

Bad input never escapes as a traceback: every failure becomes ``{"error_code": …, "message": …}``.

* Body not JSON (or empty) → HTTP 400, error_code 400 — what Confluent's Jackson layer answers.
* JSON but not an object, a field of the wrong type, or an unknown field → HTTP 422, error_code 422
  ("Unrecognized field: x"), unless the client sends ``Confluent-Accept-Unknown-Properties: true``
  (the official clients do), in which case unknown fields are ignored, as Confluent does.
* Unknown path → 404/405 with error_code 404/405; an unexpected server error → 500, error_code 50001.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from choreo.registry.errors import (
    BadRequest,
    InvalidSchema,
    OperationNotPermitted,
    RegistryError,
    UnprocessableRequest,
    UnsupportedMediaType,
)
from choreo.registry.schemas import ParsedSchema, check_schema_type, parse_avro

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
_ACCEPTED_BODY_TYPES = ("application/octet-stream",)  # plus anything */json or */*+json

SCHEMA_FIELDS = frozenset({"schema", "schemaType", "references", "metadata", "ruleSet", "id", "version",
                           "normalize", "schemaTagsToAdd", "schemaTagsToRemove"})
CONFIG_FIELDS = frozenset({"compatibility", "compatibilityLevel", "alias", "normalize", "validateFields",
                           "validateRules", "compatibilityGroup", "defaultMetadata", "overrideMetadata",
                           "defaultRuleSet", "overrideRuleSet"})
MODE_FIELDS = frozenset({"mode"})


class RegistryResponse(JSONResponse):
    media_type = MEDIA_TYPE


def error_response(error: RegistryError) -> Response:
    return RegistryResponse(error.body(), status_code=error.http_status)


async def read_body(request: Request, known_fields: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object; 415/400/422 RegistryErrors for anything else."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    json_like = content_type.endswith(("/json", "+json")) or content_type in _ACCEPTED_BODY_TYPES
    if content_type and not json_like:
        raise UnsupportedMediaType(
            f"Unsupported content type {content_type!r}: send {MEDIA_TYPE} or application/json")
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("Request body is empty: expected a JSON object")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Invalid JSON in request body: {exc}") from None
    if not isinstance(body, dict):
        raise UnprocessableRequest(f"Request body must be a JSON object, not {type(body).__name__}")
    if request.headers.get("confluent-accept-unknown-properties", "").lower() != "true":
        unknown = sorted(set(body) - known_fields)
        if unknown:
            raise UnprocessableRequest(f"Unrecognized field: {unknown[0]}")
    return body


def schema_from_body(body: dict[str, Any]) -> ParsedSchema:
    """Validate a register/lookup/compatibility body and parse its Avro schema (42201 when invalid)."""
    check_schema_type(body.get("schemaType"))
    references = body.get("references")
    if references not in (None, []):
        raise InvalidSchema("Schema references are not supported by choreo registry: send \"references\": []")
    for name in ("metadata", "ruleSet"):
        if body.get(name) not in (None, {}):
            raise InvalidSchema(f"{name!r} (data contracts) is not supported by choreo registry")
    for name in ("id", "version"):
        if body.get(name) not in (None, 0, -1):
            raise OperationNotPermitted(
                f"Registering with an explicit {name!r} needs IMPORT mode, which choreo registry lacks")
    schema = body.get("schema")
    if schema is not None and not isinstance(schema, str):
        raise UnprocessableRequest("Field 'schema' must be a string holding the schema's JSON")
    return parse_avro(schema or "")


class RegistryRoute(APIRoute):
    """A route whose unexpected errors become one logged 500 with Confluent's body, not a traceback."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (RegistryError, StarletteHTTPException, RequestValidationError):
                raise
            except Exception as exc:
                log.exception("unexpected error serving %s %s", request.method, request.url.path)
                return error_response(RegistryError(f"Internal server error: {type(exc).__name__}: {exc}"))

        return guarded


def install_error_handlers(app: FastAPI) -> None:
    """Answer every refusal with Confluent's error body."""

    @app.exception_handler(RegistryError)
    async def _registry_error(_: Request, exc: RegistryError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        try:
            message = f"HTTP {exc.status_code} {HTTPStatus(exc.status_code).phrase}"
        except ValueError:
            message = f"HTTP {exc.status_code}"
        return RegistryResponse({"error_code": exc.status_code, "message": message},
                                status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(UnprocessableRequest(f"Invalid request: {problems}"))
