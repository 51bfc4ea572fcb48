"""Search parameters, checked once where they enter.

The raw query string is decoded here rather than by Starlette, which would silently replace
invalid UTF-8 with U+FFFD: a client that sends broken bytes gets told so.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl

from app.errors import ApiError
from app.settings import Settings
from rankers.keyword import wants_prefix

__all__ = ["SearchParams", "parse_search", "search_params"]

ALLOWED = frozenset({"q", "k", "prefix", "filter", "facets", "sort", "follow"})
MAX_STRUCTURED_CHARS = 4096
"""Longest `filter`, `facets` or `sort` (the filter language has its own, finer limits)."""
# C0/C1 control characters other than tab, newline and carriage return mark binary junk.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class SearchParams:
    q: str
    k: int
    prefix: bool
    """Complete the last word (search as you type): true unless the query ends in a separator
    or `prefix=0` is given."""
    filter: str = ""
    """A filter expression (`rankers.filter_parse`), canonical once the engine checked it."""
    facets: tuple[str, ...] = ()
    sort: str = ""
    follow: bool = False
    """Keep the stream open after `done` and send updates (not part of the cache identity)."""

    @property
    def structured(self) -> bool:
        """The query filters, counts or sorts by structured fields."""
        return bool(self.filter or self.facets or self.sort)

    @cached_property
    def text(self) -> str:
        """The query as it is encoded and cached: NFKC, casefolded, whitespace collapsed."""
        return " ".join(unicodedata.normalize("NFKC", self.q).casefold().split())

    @cached_property
    def normalized(self) -> str:
        """The cache identity of the query: its `text`, plus whether the last word is
        completed (so "cat" and "cat " stay apart)."""
        key = f"{self.text}\x00{int(self.prefix)}"
        if self.structured:  # canonical forms: equivalent expressions share an entry
            key += f"\x00{self.filter}\x00{','.join(self.facets)}\x00{self.sort}"
        return key

    def to_request(self) -> dict[str, Any]:
        """The parameters as a job's JSON request carries them (`from_request` reads it)."""
        out: dict[str, Any] = {"q": self.q, "k": self.k, "prefix": self.prefix}
        if self.structured:
            out.update(filter=self.filter, facets=list(self.facets), sort=self.sort)
        return out

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> SearchParams:
        return cls(str(request["q"]), int(request["k"]), bool(request["prefix"]),
                   str(request.get("filter", "")), tuple(request.get("facets", ())),
                   str(request.get("sort", "")))

    @property
    def log_member(self) -> str:
        """How the query log records this search: enough to run it again."""
        return f"{self.k}\x00{int(self.prefix)}\x00{self.q}"

    @classmethod
    def from_log_member(cls, member: str) -> SearchParams:
        k, prefix, q = member.split("\x00", 2)
        return cls(q, int(k), prefix == "1")

    @cached_property
    def digest(self) -> str:
        return hashlib.blake2b(self.normalized.encode(), digest_size=16).hexdigest()


def _bad(code: str, message: str, status: int = 400) -> ApiError:
    return ApiError(status, code, message)


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"invalid_{name}", f"{name} must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise _bad(f"invalid_{name}", f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_search(query_string: bytes, settings: Settings) -> SearchParams:
    # Reject a huge query before decoding it: the bound is on characters, and one
    # character is at most 12 bytes once percent-encoded.
    if len(query_string) > (settings.max_query_chars + 3 * MAX_STRUCTURED_CHARS) * 12 + 64:
        raise _bad("query_too_long", f"q is longer than {settings.max_query_chars} characters",
                   414)
    try:
        pairs = parse_qsl(query_string.decode("utf-8"), keep_blank_values=True,
                          errors="strict", max_num_fields=8)
    except UnicodeDecodeError:
        raise _bad("invalid_encoding", "the query string must be percent-encoded UTF-8") from None
    except ValueError as exc:
        raise _bad("invalid_parameters", str(exc)) from None
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name not in ALLOWED:
            raise _bad("unknown_parameter",
                       f"unknown parameter {name[:40]!r}; allowed: {', '.join(sorted(ALLOWED))}")
        if name in seen:
            raise _bad("repeated_parameter", f"parameter {name!r} is given more than once")
        seen[name] = value
    return search_params(seen, settings)


def search_params(seen: Mapping[str, str], settings: Settings) -> SearchParams:
    """The parameters from their decoded values, keyed by names in `ALLOWED`: what a query
    string gave, or the flags of `progsearch search`. `ApiError` names what is wrong; the
    structured part is checked against the index by `Engine.check`."""
    for name in ("filter", "facets", "sort"):
        if len(seen.get(name, "")) > MAX_STRUCTURED_CHARS:
            raise _bad("invalid_query", f"{name} is longer than {MAX_STRUCTURED_CHARS} characters")
        if _CONTROL.search(seen.get(name, "")):
            raise _bad("invalid_query", f"{name} contains control characters")
    structured = any(seen.get(n, "").strip() for n in ("filter", "sort"))
    q = seen.get("q", "" if structured else None)
    if q is None or (not q.strip() and not structured):
        # An empty q with a filter or a sort browses the documents that pass.
        raise _bad("empty_query", "q is required and must not be blank (unless a filter or "
                   "a sort is given: then every document that passes is listed)")
    if len(q) > settings.max_query_chars:
        raise _bad("query_too_long",
                   f"q has {len(q)} characters; the limit is {settings.max_query_chars}", 414)
    if _CONTROL.search(q):
        raise _bad("invalid_query", "q contains control characters")
    k = _int("k", seen["k"], 1, settings.max_k) if "k" in seen else settings.default_k
    prefix = wants_prefix(q)
    if "prefix" in seen:
        prefix = prefix and _int("prefix", seen["prefix"], 0, 1) == 1
    facets = tuple(f.strip() for f in seen.get("facets", "").split(",") if f.strip())
    follow = _int("follow", seen["follow"], 0, 1) == 1 if "follow" in seen else False
    return SearchParams(q, k, prefix, seen.get("filter", "").strip(), facets,
                        seen.get("sort", "").strip(), follow)
