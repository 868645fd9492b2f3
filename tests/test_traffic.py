"""The request-timeout middleware: answered requests are released at once, slow ones get 504."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from typing import Any

from serving.traffic import CancellingTimeoutMiddleware

REQUEST = contextvars.ContextVar("request")


class RequestState:
    """Something a request keeps in its context (as tracing does with its span)."""


async def _call(middleware_cls: type, app_delay: float, timeout: float) -> tuple[Any, list]:
    """One HTTP request through the middleware; returns a weak reference to the request's
    state and the messages sent."""
    sent: list[dict] = []
    state = RequestState()
    REQUEST.set(state)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await asyncio.sleep(app_delay)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    middleware = middleware_cls(app, timeout=timeout)
    # a fresh context per request, as the server gives each connection task
    await asyncio.create_task(
        middleware({"type": "http", "path": "/score"}, receive, send),
        context=contextvars.copy_context(),
    )
    return weakref.ref(state), sent


def _request_released(middleware_cls: type) -> bool:
    async def scenario() -> bool:
        state, sent = await _call(middleware_cls, app_delay=0, timeout=30)
        assert sent[0]["status"] == 200
        REQUEST.set(None)
        await asyncio.sleep(0)
        gc.collect()
        return state() is None

    return asyncio.run(scenario())


def test_an_answered_request_is_released_at_once() -> None:
    assert _request_released(CancellingTimeoutMiddleware)


def test_bentomls_own_middleware_keeps_it_for_the_whole_timeout() -> None:
    """The defect the subclass fixes (if BentoML fixes it, this test says the fix can go)."""
    original = CancellingTimeoutMiddleware.__mro__[1]
    assert not _request_released(original)


def test_a_slow_request_still_gets_504() -> None:
    async def scenario() -> list:
        _, sent = await _call(CancellingTimeoutMiddleware, app_delay=1.0, timeout=0.05)
        return sent

    sent = asyncio.run(scenario())
    assert sent[0]["status"] == 504
    assert b"0.05 seconds" in sent[1]["body"]
