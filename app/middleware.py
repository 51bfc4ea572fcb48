"""The app's middleware: security headers on every answer, and CORS whose answers are JSON.

Starlette's `CORSMiddleware` answers a refused preflight with a plain-text 400 ("Disallowed
CORS origin") and an accepted one with a plain-text "OK"; every other answer of this service is
JSON, so `JsonCORSMiddleware` keeps its checks and headers and changes only those bodies.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_body
from app.settings import Settings

__all__ = ["SECURITY_HEADERS", "JsonCORSMiddleware", "SecurityHeaders", "middleware"]

# The page loads nothing from other hosts and is never framed; no answer is a document another
# site may embed, so one policy covers the page, its files and the JSON alike.
SECURITY_HEADERS = (
    ("content-security-policy",
     "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
     "base-uri 'none'; form-action 'self'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
)


_RAW = tuple((name.encode(), value.encode()) for name, value in SECURITY_HEADERS)


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to each response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Raw header pairs, appended once per response: no header object is built
                # for what is on every answer's hot path.
                raw = message.setdefault("headers", [])
                have = {name.lower() for name, _ in raw}
                message["headers"] = [*raw, *(h for h in _RAW if h[0] not in have)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class JsonCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        headers = {k: v for k, v in answer.headers.items()
                   if k not in ("content-type", "content-length")}
        if answer.status_code == 200:
            return Response(status_code=204, headers=headers)
        # Starlette's text names what failed: "Disallowed CORS origin, method".
        failed = bytes(answer.body).decode().removeprefix("Disallowed CORS ")
        return JSONResponse(
            error_body("cors_refused", f"this cross-origin request is not allowed (its {failed}); "
                       "the server's PROGSEARCH_CORS_ORIGINS lists the origins it accepts"),
            status_code=answer.status_code, headers=headers,
        )


def middleware(settings: Settings) -> list[Middleware]:
    """The app's middleware, outermost first."""
    stack = [Middleware(SecurityHeaders)]
    if settings.cors_origins:
        stack.append(Middleware(
            JsonCORSMiddleware, allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Last-Event-ID", "If-None-Match", "Authorization", "X-API-Key",
                           "Content-Type"],
            expose_headers=["ETag", "Retry-After"],
        ))
    return stack
