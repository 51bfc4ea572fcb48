"""Writes faster than embedding: past `PROGSEARCH_MAX_PENDING` documents waiting for their
vectors, writes get 429 with a JSON body and Retry-After, and nothing of them is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from tests.app.test_api import wait_ready
from tests.redis_server import private_redis

pytestmark = [pytest.mark.model, pytest.mark.integration]

KEY = "backlog-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def test_writes_past_the_embedding_backlog_get_429(root: Path) -> None:
    """Regression for "compaction waits while writes outpace embedding": the delta grew
    without bound. A broker with no worker behind it: every written document waits."""
    with private_redis() as broker:
        settings = Settings(index=root, api_key=KEY, broker_url=broker.url, max_pending=3)
        with TestClient(create_app(settings)) as client:
            wait_ready(client)
            for i in range(3):
                doc = {"id": f"w{i}", "title": "Copper kettle", "text": f"Boils water {i}."}
                assert client.post("/documents", json=doc, headers=AUTH).status_code == 201
            refused = client.post(
                "/documents",
                json=[{"id": "late", "title": "Copper kettle", "text": "Too late."}],
                headers=AUTH,
            )
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "2"
            body = refused.json()
            assert body["error"]["code"] == "backlog"
            assert "3 written documents are waiting" in body["error"]["message"]
            assert client.get("/documents/late").status_code == 404
            # What was accepted is kept and found; deletes are not refused.
            hits = client.get("/search", params={"q": "copper kettle", "k": 10}).json()["hits"]
            assert {"w0", "w1", "w2"} <= {h["id"] for h in hits}
            assert client.delete("/documents/w0", headers=AUTH).status_code == 200
