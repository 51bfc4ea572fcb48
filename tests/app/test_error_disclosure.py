"""What an unauthenticated client is told when the server fails: a code and a plain sentence,
never a server path, an exception type or its text (those go to the log)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from app.engine import Engine, KeywordState
from app.params import SearchParams
from app.server import create_app
from app.settings import Settings
from index.core.types import Document
from tests.conftest import make_corpus
from tests.fake_vectors import build_with_vectors
from tests.server_process import running_server
from tests.sse import read_stream

UNWRITABLE = "/dev/null/models"
"""Under a file: the encoder cannot create its model folder there."""
EXCEPTION_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception)\b")
PATH = re.compile(r"(^|[\s'\"(])/\w")
SHARED_REDIS = "redis://127.0.0.1:6379/0"


def reveals_something(text: str) -> list[str]:
    found = [s for s in (UNWRITABLE, "/dev/null", "Errno", "Traceback") if s in text]
    return found + [m.group(0) for m in (EXCEPTION_NAME.search(text), PATH.search(text)) if m]


@pytest.mark.integration
def test_unwritable_model_folder_shows_clients_no_path_or_exception(
    tmp_path: Path, http: httpx.Client
) -> None:
    docs = [Document(r["_id"], r["title"], r["text"]) for r in make_corpus(30)]
    build_with_vectors(docs, tmp_path / "ix")
    env = {"PROGSEARCH_MODEL_DIR": UNWRITABLE}
    with running_server(tmp_path / "ix", tmp_path / "server.log", env=env) as server:
        server.wait_ready(http, semantic=False)
        deadline = time.monotonic() + 60  # the encoder fails on its thread, within moments
        while (ready := http.get(f"{server.url}/readyz").json())["phases"]["semantic"] == "loading":
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        assert ready["phases"] == {"keyword": "ready", "semantic": "failed", "enhanced": "failed"}
        assert ready["semantic_error"] == "the query encoder failed to load"
        _, events = read_stream(http, f"{server.url}/search/stream?q=topic&k=5")
        errors = [e.data for e in events if e.event == "error"]
        assert [(e["phase"], e["code"]) for e in errors] == [
            ("semantic", "unavailable"), ("enhanced", "unavailable"),
        ]
        assert all(e["message"] == "the query encoder failed to load" for e in errors)
        seen = http.get(f"{server.url}/readyz").text + "".join(str(e) for e in errors)
        assert reveals_something(seen) == []
    # What clients are not told is in the log, for the operator.
    assert UNWRITABLE in server.output() and "ModelError" in server.output()


@pytest.mark.parametrize(
    ("text", "revealed"),
    [
        ("the query encoder failed to load", False),
        ("this index has no passages; rebuild it without --no-passages", False),
        ("ModelError: cannot write the model cache folder /dev/null/x: [Errno 20]", True),
        ("cannot open '/srv/index/CURRENT'", True),
        ("the semantic phase failed: KeyError", True),
    ],
)
def test_the_disclosure_check_tells_paths_and_exceptions(text: str, revealed: bool) -> None:
    assert bool(reveals_something(text)) is revealed


@pytest.mark.integration
def test_a_worker_failure_replies_with_no_path_or_exception(tmp_path: Path) -> None:
    """The worker's reply becomes the enhanced phase's `error` event as it is."""
    import orjson
    import redis

    from app.celery_app import make_celery
    from app.tasks import WorkerContext, register

    (tmp_path / "CURRENT").write_text("gone\n")  # names a version that is not there
    context = WorkerContext(tmp_path, SHARED_REDIS)
    app = make_celery("memory://")
    register(app, context)
    channel = f"ps1:reply:test-{time.time_ns()}"
    client = redis.Redis.from_url(SHARED_REDIS)
    with client.pubsub(ignore_subscribe_messages=True) as sub:  # type: ignore[no-untyped-call]
        sub.subscribe(channel)
        request = {"id": "r1", "reply_to": channel, "q": "topic", "k": 5, "prefix": False,
                   "vector": [0.0] * 16}
        app.tasks["progsearch.enhance"](request)
        deadline = time.monotonic() + 5
        message = None  # the subscription's confirmation comes first, read as None
        while message is None and time.monotonic() < deadline:
            message = sub.get_message(timeout=1)
    client.close()
    assert message is not None
    reply = orjson.loads(message["data"])
    assert reply["id"] == "r1" and reply["payload"] is None
    assert reply["error"] == "the enhanced phase failed"
    assert reveals_something(reply["error"]) == []


class FailingKeywordEngine(Engine):
    """A phase failing with an exception that names a server path."""

    def keyword_payload(self, params: SearchParams, state: KeywordState) -> dict[str, Any]:
        raise FileNotFoundError(2, "No such file or directory", "/srv/index/keyword/terms.npy")


def test_a_failing_phase_event_names_no_exception(snapshot_root: Path) -> None:
    engine = FailingKeywordEngine.open(snapshot_root)
    with TestClient(create_app(Settings(), engine=engine)) as client:
        _, events = read_stream(client, "/search/stream?q=protein")  # type: ignore[arg-type]
    assert events[0].event == "error"
    assert events[0].data == {"phase": "keyword", "code": "failed",
                              "message": "the keyword phase failed"}
    assert reveals_something(str(events[0].data)) == []
