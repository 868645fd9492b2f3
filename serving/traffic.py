"""A fix for BentoML 1.4's request timeout, which kept every answered request alive.

`bentoml._internal.server.http.traffic.TimeoutMiddleware` schedules a `traffic.timeout` timer
per request with `loop.call_later` and never cancels it. The timer holds the request's
future and its context (tracing span, attributes), so every request answered in the last
`timeout` seconds stays alive: ~18,000 requests at 600 req/s with a 30 s timeout. The
collector's full passes over them stalled the service 50–250 ms each, every 1–2 s, which
set the p99 latency (docs/benchmarks.md, Serving). The subclass below is the same
middleware with the timer cancelled when the request is done; `install()` makes BentoML
build its apps with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse

Scope = dict[str, Any]


class CancellingTimeoutMiddleware(traffic.TimeoutMiddleware):
    """BentoML's TimeoutMiddleware (same 504 on timeout) whose timer ends with the request."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: dict[str, Any]) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, receive, _send))
        try:
            await waiter
        except TimeoutError:
            if handler.cancel():
                message = f"Not able to process the request in {self.timeout} seconds"
                await JSONResponse({"error": message}, status_code=504)(scope, receive, send)
        else:
            await handler
        finally:
            timer.cancel()


def install() -> None:
    """Make BentoML's app factory pick the cancelling middleware (it imports the name from
    this module when it builds an app, so the replacement must happen before serving)."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
