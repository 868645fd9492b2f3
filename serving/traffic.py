"""Two fixes for BentoML 1.4's request middleware: the request timeout, which kept every
answered request alive, and the metrics' endpoint label, one series per path ever requested.

`bentoml._internal.server.http.traffic.TimeoutMiddleware` schedules a `traffic.timeout` timer
per request with `loop.call_later` and never cancels it. The timer holds the request's
future and its context (tracing span, attributes), so every request answered in the last
`timeout` seconds stays alive: ~18,000 requests at 600 req/s with a 30 s timeout. The
collector's full passes over them stalled the service 50–250 ms each, every 1–2 s, which
set the p99 latency (docs/benchmarks.md, Serving). The subclass below is the same
middleware with the timer cancelled when the request is done; `install()` makes BentoML
build its apps with it.

`RunnerTrafficMetricsMiddleware` labels its counters, histograms and gauges with the raw
request path, so every unknown path (with or without a token) made new series: 5,000 random
paths grew /metrics to 20 MB and the worker by 106 MB. `BoundedMetricsMiddleware` labels a
request with its path only when the path is one of the service's own; all others share the
label `OTHER_PATHS`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.server.http import instruments, traffic
from starlette.responses import JSONResponse

Scope = dict[str, Any]

OTHER_PATHS = "/{other}"
_ORIGINAL_PATH = "dangol.original_path"


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


class BoundedMetricsMiddleware(instruments.RunnerTrafficMetricsMiddleware):
    """BentoML's metrics middleware whose endpoint label is a known path or `OTHER_PATHS`."""

    known_paths: frozenset[str] = frozenset()
    # The metric objects of the first instance: a second app in the same process (tests)
    # would register the same names again, which Prometheus' registry refuses.
    _shared: dict[str, Any] | None = None

    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(_RestoreOriginalPath(app), **options)

    def _setup(self) -> None:
        shared = BoundedMetricsMiddleware._shared
        if shared is None:
            super()._setup()
            shared = {k: v for k, v in vars(self).items() if k.startswith("metrics_")}
            BoundedMetricsMiddleware._shared = shared
        vars(self).update(shared)
        self._is_setup = True

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in self.known_paths:
            scope = {**scope, "path": OTHER_PATHS, _ORIGINAL_PATH: scope["path"]}
        await super().__call__(scope, receive, send)


class _RestoreOriginalPath:
    """Below the metrics middleware: the request's real path again."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if _ORIGINAL_PATH in scope:
            original = scope[_ORIGINAL_PATH]
            scope = {k: v for k, v in scope.items() if k != _ORIGINAL_PATH}
            scope["path"] = original
        await self.app(scope, receive, send)


def install(known_paths: set[str]) -> None:
    """Make BentoML's app factory pick the cancelling timeout and the bounded metrics (it
    imports both names from their modules when it builds an app, so the replacement must
    happen before serving); `known_paths` keep their own metrics label."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
    BoundedMetricsMiddleware.known_paths = frozenset(known_paths)
    instruments.RunnerTrafficMetricsMiddleware = BoundedMetricsMiddleware
