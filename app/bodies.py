"""Request bodies as the write endpoints read them: bounded while they arrive, typed by
their ``Content-Type``.

`POST /documents` and `POST /events` both read through here, so a body over its endpoint's
limit is refused the same way (413 as soon as it passes the limit, before the rest is read).
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from app.errors import ApiError

__all__ = ["media_type", "read_body"]


def media_type(request: Request) -> str:
    """The request's media type, lower case, without its parameters ("" when none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"the body is over {limit} bytes")
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body_too_large", f"the body is over {limit} bytes")
            parts.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client left before the body") from None
    return b"".join(parts)
