"""Every answer that is not a success, in OpenAI's error shape {"error": {"message", "type", "param", "code"}}: one
handler per kind of exception (4xx where the request is at fault, a logged 500 with a message otherwise, never
plain text), and the request-size guard that answers an oversized body 413 before reading it.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gptkit.serve.registry import ModelUnavailable, OutsideRuns, UnknownModel
from gptkit.serve.worker import Overloaded

log = logging.getLogger("gptkit.serve")
KINDS = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 413: "invalid_request_error",
         500: "server_error", 503: "server_overloaded"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


def error(status: int, message: str, param=None, code=None) -> JSONResponse:
    kind = KINDS.get(status, "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


def add_error_handlers(app: FastAPI) -> None:
    """Map every exception a route can raise to OpenAI's shape."""

    @app.exception_handler(ApiError)
    async def api_error(_, e: ApiError):
        return error(e.status, str(e), e.param, e.code)

    @app.exception_handler(UnknownModel)
    async def unknown(_, e: UnknownModel):
        return error(404, e.args[0], "model", "model_not_found")

    @app.exception_handler(OutsideRuns)
    async def outside(_, e: OutsideRuns):
        return error(403, e.args[0], None, "outside_runs")

    @app.exception_handler(ModelUnavailable)
    async def unavailable(_, e: ModelUnavailable):
        log.warning("%s", e)
        return error(503, e.args[0], "model", "model_unavailable")

    @app.exception_handler(Overloaded)
    async def overloaded(_, e: Overloaded):
        return error(503, str(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(_, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return error(400, f"'{where}': {first.get('msg', 'invalid')}" if where else "invalid request", where)

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        if e.status_code == 404:
            return error(404, f"no route {request.method} {request.url.path}; the API is /v1/models, /v1/completions "
                         "and /api/*, the page is /", None, "unknown_route")
        return error(e.status_code, str(e.detail))

    @app.exception_handler(ValueError)
    async def value_error(_, e: ValueError):
        return error(400, " ".join(str(e).split()))

    @app.exception_handler(Exception)
    async def internal(request, e: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, f"internal error ({type(e).__name__}: {' '.join(str(e).split())[:300]}); the server's log "
                     "has the details", None, "internal_error")


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 at once, from its Content-Length when it
    declares one, else as soon as the bytes read pass the limit; nothing past the limit is buffered."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:  # raised by `limited` alone
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": {"message": f"the request body is over {self.limit:,} bytes; send less (a "
                                                "prompt longer than the model's context is refused anyway)",
                                     "type": "invalid_request_error", "param": None,
                                     "code": "request_too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
