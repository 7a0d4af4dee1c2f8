"""The Confluent Schema Registry REST API v1 over a ``SchemaStore``: ``create_app(store)``.

Reads answer from memory on the event loop; writes (which wait for a Kafka ack) run in the thread pool.
Query flags accept Confluent's and the Python client's spellings (``true``, ``True``, ``1``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from choreo.observability.http import add_health_routes
from choreo.registry.compat import CompatibilityLevel
from choreo.registry.errors import InvalidMode, SchemaNotFound, SubjectConfigNotFound, UnprocessableRequest
from choreo.registry.protocol import (
    CONFIG_FIELDS,
    MEDIA_TYPE,
    MODE_FIELDS,
    SCHEMA_FIELDS,
    RegistryResponse,
    RegistryRoute,
    install_error_handlers,
    read_body,
    schema_from_body,
)
from choreo.registry.schemas import SUPPORTED_TYPES
from choreo.registry.state import SubjectVersion, parse_version
from choreo.registry.store import SchemaStore

READWRITE = {"mode": "READWRITE"}


def _page(items: list[Any], offset: int, limit: int) -> list[Any]:
    """Confluent's offset/limit paging; a negative limit means no limit."""
    items = items[max(offset, 0):]
    return items if limit < 0 else items[:limit]


def _schema_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SchemaNotFound(text) from None


def _version_body(entry: SubjectVersion, schema_text: str) -> dict[str, Any]:
    return {"subject": entry.subject, "version": entry.version, "id": entry.schema_id, "schema": schema_text}


def _raw(schema_text: str) -> Response:
    return Response(schema_text, media_type=MEDIA_TYPE)


def create_app(store: SchemaStore) -> FastAPI:
    """The registry's ASGI app. ``store`` must be loaded already."""
    app = FastAPI(title="choreo schema registry", docs_url=None, redoc_url=None, openapi_url=None,
                  default_response_class=RegistryResponse)
    install_error_handlers(app)
    router = APIRouter(route_class=RegistryRoute)
    _schema_routes(router, store)
    _subject_routes(router, store)
    _compatibility_routes(router, store)
    _config_routes(router, store)
    app.include_router(router)
    # The store is loaded before the app exists, so a serving registry is alive and ready.
    add_health_routes(app, is_alive=lambda: True, is_ready=lambda: True)
    return app


def _schema_routes(router: APIRouter, store: SchemaStore) -> None:
    @router.get("/")
    async def root() -> dict[str, Any]:
        return {}

    @router.get("/schemas/types")
    async def schema_types() -> list[str]:
        return list(SUPPORTED_TYPES)

    @router.get("/schemas/ids/{schema_id}")
    async def schema_by_id(schema_id: str) -> dict[str, Any]:
        with store.read() as state:
            return {"schema": state.schema(_schema_id(schema_id)).text}

    @router.get("/schemas/ids/{schema_id}/schema")
    async def raw_schema_by_id(schema_id: str) -> Response:
        with store.read() as state:
            return _raw(state.schema(_schema_id(schema_id)).text)

    @router.get("/schemas/ids/{schema_id}/subjects")
    async def subjects_of_schema(schema_id: str, deleted: bool = False, subject: str | None = None,
                                 offset: int = 0, limit: int = -1) -> list[str]:
        with store.read() as state:
            state.schema(_schema_id(schema_id))
            uses = state.usages(_schema_id(schema_id), deleted=deleted)
        names = list(dict.fromkeys(u.subject for u in uses if subject is None or u.subject == subject))
        return _page(names, offset, limit)

    @router.get("/schemas/ids/{schema_id}/versions")
    async def versions_of_schema(schema_id: str, deleted: bool = False, subject: str | None = None,
                                 offset: int = 0, limit: int = -1) -> list[dict[str, Any]]:
        with store.read() as state:
            state.schema(_schema_id(schema_id))
            uses = state.usages(_schema_id(schema_id), deleted=deleted)
        pairs = [{"subject": u.subject, "version": u.version} for u in uses if subject in (None, u.subject)]
        return _page(pairs, offset, limit)


def _subject_routes(router: APIRouter, store: SchemaStore) -> None:
    @router.get("/subjects")
    async def subjects(deleted: bool = False, subjectPrefix: str = "",  # noqa: N803 - Confluent's name
                       offset: int = 0, limit: int = -1) -> list[str]:
        with store.read() as state:
            names = state.subject_names(deleted=deleted)
        return _page([n for n in names if n.startswith(subjectPrefix)], offset, limit)

    @router.get("/subjects/{subject:path}/versions")
    async def versions(subject: str, deleted: bool = False, offset: int = 0, limit: int = -1) -> list[int]:
        with store.read() as state:
            return _page([v.version for v in state.versions(subject, deleted=deleted)], offset, limit)

    @router.post("/subjects/{subject:path}/versions")
    async def register(subject: str, request: Request, normalize: bool = False) -> dict[str, Any]:
        # normalize is accepted and has no further effect: identity already ignores formatting.
        parsed = schema_from_body(await read_body(request, SCHEMA_FIELDS))
        return {"id": await run_in_threadpool(store.register, subject, parsed)}

    @router.get("/subjects/{subject:path}/versions/{version}/schema")
    async def raw_version_schema(subject: str, version: str, deleted: bool = False) -> Response:
        spec = parse_version(version)
        with store.read() as state:
            return _raw(state.schema(state.version(subject, spec, deleted=deleted).schema_id).text)

    @router.get("/subjects/{subject:path}/versions/{version}/referencedby")
    async def referenced_by(subject: str, version: str) -> list[int]:
        spec = parse_version(version)
        with store.read() as state:
            state.version(subject, spec)
        return []  # references are not supported, so nothing refers to anything

    @router.get("/subjects/{subject:path}/versions/{version}")
    async def get_version(subject: str, version: str, deleted: bool = False) -> dict[str, Any]:
        spec = parse_version(version)
        with store.read() as state:
            entry = state.version(subject, spec, deleted=deleted)
            return _version_body(entry, state.schema(entry.schema_id).text)

    @router.delete("/subjects/{subject:path}/versions/{version}")
    async def delete_version(subject: str, version: str, permanent: bool = False) -> int:
        spec = parse_version(version)
        return await run_in_threadpool(lambda: store.delete_version(subject, spec, permanent=permanent))

    @router.post("/subjects/{subject:path}")
    async def lookup(subject: str, request: Request, deleted: bool = False,
                     normalize: bool = False) -> dict[str, Any]:
        parsed = schema_from_body(await read_body(request, SCHEMA_FIELDS))
        with store.read() as state:
            state.versions(subject, deleted=deleted)  # 40401 for an unknown subject
            entry = state.find(subject, parsed, deleted=deleted)
            if entry is None:
                raise SchemaNotFound()
            return _version_body(entry, state.schema(entry.schema_id).text)

    @router.delete("/subjects/{subject:path}")
    async def delete_subject(subject: str, permanent: bool = False) -> list[int]:
        return await run_in_threadpool(lambda: store.delete_subject(subject, permanent=permanent))


def _compatibility_routes(router: APIRouter, store: SchemaStore) -> None:
    def answer(problems: list[str], verbose: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"is_compatible": not problems}
        if verbose:
            body["messages"] = problems
        return body

    @router.post("/compatibility/subjects/{subject:path}/versions/{version}")
    async def check_version(subject: str, version: str, request: Request, verbose: bool = False,
                            normalize: bool = False) -> dict[str, Any]:
        spec = parse_version(version)
        parsed = schema_from_body(await read_body(request, SCHEMA_FIELDS))
        return answer(await run_in_threadpool(store.compatibility, subject, parsed, spec), verbose)

    @router.post("/compatibility/subjects/{subject:path}/versions")
    async def check_all(subject: str, request: Request, verbose: bool = False,
                        normalize: bool = False) -> dict[str, Any]:
        parsed = schema_from_body(await read_body(request, SCHEMA_FIELDS))
        return answer(await run_in_threadpool(store.compatibility, subject, parsed, None), verbose)


def _config_routes(router: APIRouter, store: SchemaStore) -> None:
    async def update(subject: str | None, request: Request) -> dict[str, Any]:
        body = await read_body(request, CONFIG_FIELDS)
        unsupported = sorted(k for k, v in body.items()
                             if k not in ("compatibility", "compatibilityLevel") and v is not None)
        if unsupported:
            raise UnprocessableRequest(
                f"Config field {unsupported[0]!r} is not supported by choreo registry: "
                "set 'compatibility' only")
        level = CompatibilityLevel.parse(body.get("compatibility", body.get("compatibilityLevel")))
        await run_in_threadpool(store.set_level, subject, level)
        return {"compatibility": level.value}

    @router.get("/config")
    async def get_global_config() -> dict[str, Any]:
        with store.read() as state:
            return {"compatibilityLevel": state.level(None).value}

    @router.put("/config")
    async def put_global_config(request: Request) -> dict[str, Any]:
        return await update(None, request)

    @router.delete("/config")
    async def delete_global_config() -> dict[str, Any]:
        return {"compatibilityLevel": (await run_in_threadpool(store.delete_level, None)).value}

    @router.get("/config/{subject:path}")
    async def get_subject_config(subject: str, defaultToGlobal: bool = False) -> dict[str, Any]:  # noqa: N803
        with store.read() as state:
            if subject not in state.configs and not defaultToGlobal:
                raise SubjectConfigNotFound(subject)
            return {"compatibilityLevel": state.level(subject).value}

    @router.put("/config/{subject:path}")
    async def put_subject_config(subject: str, request: Request) -> dict[str, Any]:
        return await update(subject, request)

    @router.delete("/config/{subject:path}")
    async def delete_subject_config(subject: str) -> dict[str, Any]:
        return {"compatibilityLevel": (await run_in_threadpool(store.delete_level, subject)).value}

    # Modes: choreo's registry is always READWRITE (no IMPORT/READONLY); setting READWRITE is a no-op.
    async def set_mode(request: Request) -> dict[str, Any]:
        mode = (await read_body(request, MODE_FIELDS)).get("mode")
        if not isinstance(mode, str) or mode.upper() != "READWRITE":
            raise InvalidMode(mode)
        return READWRITE

    @router.get("/mode")
    async def get_global_mode() -> dict[str, Any]:
        return READWRITE

    @router.put("/mode")
    async def put_global_mode(request: Request, force: bool = False) -> dict[str, Any]:
        return await set_mode(request)

    @router.get("/mode/{subject:path}")
    async def get_subject_mode(subject: str, defaultToGlobal: bool = False) -> dict[str, Any]:  # noqa: N803
        return READWRITE

    @router.put("/mode/{subject:path}")
    async def put_subject_mode(subject: str, request: Request, force: bool = False) -> dict[str, Any]:
        return await set_mode(request)

    @router.delete("/mode/{subject:path}")
    async def delete_subject_mode(subject: str) -> dict[str, Any]:
        return READWRITE
