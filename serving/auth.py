"""Bearer-token access for every path except health and the API document."""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from serving.settings import ServingSettings

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]
# The Swagger UI's scripts and styles, served by BentoML beside its index page at /.
PUBLIC_PREFIXES = ("/static_content/",)


class MissingTokenError(RuntimeError):
    """The service refuses to start without a token: open scoring is never the default."""


def resolve_token(settings: ServingSettings) -> str:
    """The token from the config, else from the environment variable it names."""
    token = settings.token or os.environ.get(settings.token_env, "")
    if len(token) < 16:
        raise MissingTokenError(
            f"serving: no bearer token of at least 16 characters; set the environment "
            f"variable {settings.token_env} (or serving.token in the config)"
        )
    return token


class BearerTokenMiddleware:
    """Answers 401 unless `Authorization: Bearer <token>` matches (constant-time compare)."""

    def __init__(self, app: ASGIApp, settings: ServingSettings) -> None:
        self.app = app
        self.expected = f"Bearer {resolve_token(settings)}".encode()
        self.public = frozenset(settings.public_paths)

    def is_public(self, path: str) -> bool:
        """Health, the API document, and the Swagger UI's own files (BentoML's)."""
        return path in self.public or path.startswith(PUBLIC_PREFIXES)

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or self.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = _header(scope["headers"], b"authorization")
        if given is not None and hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        detail = "missing bearer token" if given is None else "wrong bearer token"
        body = json.dumps({"error": f"Authorization: {detail}"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class RedactInputErrors:
    """A logging filter for BentoML's "Exception on <path>" lines: a rejected request is
    logged at INFO by error location and type, never with the values (customer ids, pydantic's
    quoted input) it carried; server errors keep ERROR and their traceback."""

    def filter(self, record) -> bool:
        from bentoml.exceptions import BentoMLException
        from pydantic import ValidationError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            where = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['type']}" for e in error.errors()
            )
            _client_error(record, f"bad input: {where}")
        elif isinstance(error, BentoMLException) and error.error_code.value < 500:
            # our messages start with the field ("customer_id: 'C1' is not ..."): keep that
            field = str(error).split(":", 1)[0] if ":" in str(error) else type(error).__name__
            _client_error(record, f"{error.error_code.value} on {field}")
        return True


def _client_error(record, note: str) -> None:
    record.msg = f"{record.msg} ({note})".replace("Exception on", "Rejected request to", 1)
    record.exc_info, record.exc_text = None, None
    record.levelno, record.levelname = logging.INFO, "INFO"
