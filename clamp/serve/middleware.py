"""Prometheus metrics and the ASGI middleware: request metrics, the body limit, the content
type of uploads, `nosniff` on every response.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from clamp.serve.errors import error_response

UPLOAD_ROUTES = ("/api/similar", "/api/classify")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small form fields around an upload


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # per app: several apps (tests) never clash
        self.requests = Counter(
            "clamp_serve_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "clamp_serve_request_duration_seconds",
            "request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.in_flight = Gauge("clamp_serve_requests_in_flight", "requests being served", registry=self.registry)
        self.conversions = Counter(
            "clamp_serve_conversions_total", "uploads converted", ["outcome"], registry=self.registry
        )
        self.rows = Gauge("clamp_serve_index_rows", "tunes in the search index", registry=self.registry)


class ServeMiddleware:
    """Pure ASGI (cheaper than BaseHTTPMiddleware): metrics, the request body limit, the content
    type of uploads, and `nosniff` on every response."""

    def __init__(self, app: Any, metrics: Metrics, max_body: int) -> None:
        self.app, self.metrics, self.max_body = app, metrics, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status = {"code": 500}
        start = time.perf_counter()
        self.metrics.in_flight.inc()

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-content-type-options", b"nosniff")]
            await send(message)

        try:
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await refusal(scope, receive, send_wrapper)
                return
            await self.app(scope, self._limited(receive), send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], label, str(status["code"])).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - start)

    def _refusal(self, scope: dict, headers: dict[str, str]) -> JSONResponse | None:
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return error_response(
                413,
                "too_large",
                f"request body of {int(length)} bytes; uploads are limited to {self.max_body - FORM_OVERHEAD} bytes",
            )
        if scope["method"] == "POST" and scope["path"] in UPLOAD_ROUTES:
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in FORM_TYPES:
                return error_response(
                    415,
                    "unsupported_media_type",
                    f"content type {ctype or '(none)'}: send multipart/form-data (a file upload) or a form",
                )
        return None

    def _limited(self, receive: Callable) -> Callable:
        seen = {"bytes": 0}

        async def wrapper() -> dict:  # a chunked body has no content-length: count as it arrives
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > self.max_body:  # an HTTPException: FastAPI passes it through form parsing
                    raise HTTPException(413, f"request body over {self.max_body} bytes")
            return message

        return wrapper
