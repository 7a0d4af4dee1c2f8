"""Find a Service by name: a reference service (``payment``) or ``package.module:attribute``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from choreo.errors import ConfigError
from choreo.service import Service

REFERENCE_PACKAGE = "services"


def load_service(target: str) -> Service:
    """``"payment"`` → ``services.payment:service``; ``"myapp.billing:svc"`` → that attribute.

    The current directory is put on ``sys.path`` so a user's own project imports as it would in tests.
    """
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    module_name, _, attribute = target.partition(":")
    if not attribute:
        module_name, attribute = f"{REFERENCE_PACKAGE}.{target.replace('-', '_')}", "service"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            hint = "" if ":" in target else " (a reference service name, or package.module:attribute)"
            raise ConfigError(f"no service {target!r}: module {module_name} not found{hint}") from None
        raise
    service = getattr(module, attribute, None)
    if not isinstance(service, Service):
        raise ConfigError(f"{module_name}:{attribute} is not a choreo Service (got {type(service).__name__})")
    return service
