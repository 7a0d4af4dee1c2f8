"""Typed registry errors, each answered with Confluent's body ``{"error_code": ..., "message": ...}``.

Confluent's five-digit codes carry the HTTP status in their first three digits (40401 → 404,
42201 → 422, 50001 → 500); three-digit codes (409, 400, 422, 415) are the status itself.
Messages follow Confluent's wording where clients or people may match on it.
"""

from __future__ import annotations

from typing import Any

from choreo.errors import ChoreoError

MAX_VERSION = 2**31 - 1


class RegistryError(ChoreoError):
    """A request the registry refuses; ``error_code`` and ``message`` go to the client verbatim."""

    error_code: int = 50001

    def __init__(self, message: str, *, error_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code

    @property
    def http_status(self) -> int:
        code = self.error_code
        return code // 100 if code >= 10000 else code

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message}


class SubjectNotFound(RegistryError):
    error_code = 40401

    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' not found.")


class VersionNotFound(RegistryError):
    error_code = 40402

    def __init__(self, version: int | str) -> None:
        super().__init__(f"Version {version} not found.")


class SchemaNotFound(RegistryError):
    error_code = 40403

    def __init__(self, schema_id: int | str | None = None) -> None:
        super().__init__("Schema not found" if schema_id is None else f"Schema {schema_id} not found")


class SubjectSoftDeleted(RegistryError):
    error_code = 40404

    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently")


class SubjectNotSoftDeleted(RegistryError):
    error_code = 40405

    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' was not deleted first before being permanently deleted")


class VersionSoftDeleted(RegistryError):
    error_code = 40406

    def __init__(self, subject: str, version: int) -> None:
        super().__init__(f"Subject '{subject}' Version {version} was soft deleted. "
                         "Set permanent=true to delete permanently")


class VersionNotSoftDeleted(RegistryError):
    error_code = 40407

    def __init__(self, subject: str, version: int) -> None:
        super().__init__(
            f"Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
        )


class SubjectConfigNotFound(RegistryError):
    error_code = 40408

    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' does not have subject-level compatibility configured")


class IncompatibleSchema(RegistryError):
    error_code = 409

    def __init__(self, subject: str, details: list[str]) -> None:
        super().__init__(
            f'Schema being registered is incompatible with an earlier schema for subject "{subject}", '
            f"details: [{', '.join(details)}]"
        )
        self.details = details


class InvalidSchema(RegistryError):
    error_code = 42201


class InvalidVersion(RegistryError):
    error_code = 42202

    def __init__(self, version: str) -> None:
        super().__init__(
            f"The specified version '{version}' is not a valid version id. "
            f'Allowed values are between [1, {MAX_VERSION}] and the string "latest"'
        )


class InvalidCompatibilityLevel(RegistryError):
    error_code = 42203

    def __init__(self, level: object) -> None:
        super().__init__(
            f"Invalid compatibility level {level!r}. Valid values are none, backward, forward, full, "
            "backward_transitive, forward_transitive, and full_transitive"
        )


class InvalidMode(RegistryError):
    error_code = 42204

    def __init__(self, mode: object) -> None:
        super().__init__(f"Invalid mode {mode!r}: choreo registry only supports READWRITE")


class OperationNotPermitted(RegistryError):
    error_code = 42205


class BadRequest(RegistryError):
    """The body is not JSON at all (Jersey/Jackson in Confluent answer 400 too)."""

    error_code = 400


class UnprocessableRequest(RegistryError):
    """JSON, but not the shape the endpoint takes (Confluent: 422 "Unrecognized field: ...")."""

    error_code = 422


class UnsupportedMediaType(RegistryError):
    error_code = 415


class StoreError(RegistryError):
    """The Kafka log did not take a write or could not be read (Confluent: 50001)."""

    error_code = 50001

    def __init__(self, detail: str) -> None:
        super().__init__(f"Error in the backend data store - {detail}")
