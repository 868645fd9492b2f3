"""What every request meets before an endpoint: the body limit, the JSON-only rule, the API
document, and one error shape (`{"error": "..."}`) on every 4xx and 5xx answer.

BentoML answers a validation error with `{"error", "detail": [...]}`, its own 4xx with a
one-element array, an unknown route or method with plain text, and a multipart body without
a boundary with a 500; `RequestGuard` turns all of these into the one documented shape, so
the OpenAPI document (serving.openapi) can state it once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from serving.settings import ServingSettings

Scope = dict[str, Any]
Message = dict[str, Any]

JSON = "application/json"
DOCUMENT_PATH = "/docs.json"
# Errors named in an answer; the rest are counted ("and 3 more").
MAX_ERRORS_NAMED = 5


class RequestGuard:
    """ASGI middleware: body limit (413), JSON only on POST (415), the API document at
    /docs.json, /docs leading to the Swagger UI at /, and one error shape."""

    def __init__(self, app, settings: ServingSettings, document: Callable[[], dict]) -> None:
        self.app = app
        self.max_body = settings.max_body_bytes
        self.document = document

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == DOCUMENT_PATH and method in ("GET", "HEAD"):
            body = json.dumps(self.document()).encode()
            await _answer(send, 200, body, JSON)
            return
        if path == "/docs" and method in ("GET", "HEAD"):
            await _answer(send, 307, b"", "text/plain", [(b"location", b"/")])
            return
        send = _uniform_errors(send)
        if method == "POST":
            media = _media_type(scope)
            if media is not None and media != JSON:
                await _error(send, 415, f"content-type: send {JSON}, not {media}")
                return
            body = await _read_body(receive, _content_length(scope), self.max_body)
            if body is None:
                limit = f"{self.max_body:,} bytes"
                await _error(send, 413, f"body: larger than {limit} (serving.max_body_bytes)")
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _media_type(scope: Scope) -> str | None:
    """The request's media type in lower case; None without a Content-Type (read as JSON)."""
    value = _header(scope, b"content-type")
    if value is None or not value.strip():
        return None
    return value.split(";", 1)[0].strip().lower()


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _read_body(receive: Callable, declared: int | None, limit: int) -> bytes | None:
    """The whole body, or None once it is over `limit` (by its declared length or as read)."""
    if declared is not None and declared > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the endpoint sees an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Callable) -> Callable:
    """A `receive` that hands the endpoint the body already read, then the real stream."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(
    send: Callable,
    status: int,
    body: bytes,
    media: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Callable, status: int, message: str) -> None:
    await _answer(send, status, json.dumps({"error": message}).encode(), JSON)


def _uniform_errors(send: Callable) -> Callable:
    """A `send` that rewrites every 4xx/5xx body into `{"error": "..."}` (headers kept)."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def uniform(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message["status"] >= 400:
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = json.dumps({"error": error_message(start["status"], b"".join(chunks))}).encode()
        dropped = (b"content-length", b"content-type")
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in dropped]
        headers += [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return uniform


def error_message(status: int, body: bytes) -> str:
    """The one message of an error body in any of BentoML's and Starlette's shapes."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text or _phrase(status)
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        return _phrase(status)
    details = data.get("detail")
    if isinstance(details, list) and details:
        return validation_message(details)
    message = data.get("error") or data.get("detail")
    return str(message) if message else _phrase(status)


def validation_message(errors: list[dict[str, Any]]) -> str:
    """Pydantic's errors as `field.path: message; ...` (never the input values)."""
    parts = []
    for error in errors[:MAX_ERRORS_NAMED]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "(body)"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = len(errors) - MAX_ERRORS_NAMED
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


# --- logs --------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Control characters shown as escapes, so a request cannot start a log line of its own."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class EscapeControlCharacters(logging.Filter):
    """A logging filter: the formatted message with control characters escaped (paths and
    ids in BentoML's access and error lines come from the request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True
