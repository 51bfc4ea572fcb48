"""HTTP errors: the one place where failures become status codes and JSON bodies.

    ApiError             a request the service refuses, with its status and a stable code
    ProgsearchError      (index.core.errors) mapped here: QueryError -> 400, the rest -> 500
    HTTPException        Starlette's own (404, 405) -> the same JSON shape
    anything else        500 with a JSON body and no stack trace; the trace goes to the log

Every body is `{"error": {"code": ..., "message": ...}}`.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from index.core.errors import ProgsearchError, QueryError

__all__ = ["ApiError", "error_body", "exception_handlers"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _count(request: Request, code: str) -> None:
    metrics = getattr(request.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(code).inc()


def _json(request: Request, status: int, code: str, message: str,
          headers: dict[str, str] | None = None) -> Response:
    _count(request, code)
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _json(request, exc.status, exc.code, exc.message, exc.headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _json(request, exc.status_code, code, str(exc.detail))


async def _progsearch_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, QueryError):
        return _json(request, 400, "invalid_query", str(exc))
    log.error("request failed: %s", exc)
    return _json(request, 500, "internal", "the search failed; see the server log")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path)
    return _json(request, 500, "internal", "unexpected server error; see the server log")


exception_handlers: dict[Any, Any] = {
    ApiError: _api_error,
    HTTPException: _http_exception,
    ProgsearchError: _progsearch_error,
    Exception: _unexpected,
}
