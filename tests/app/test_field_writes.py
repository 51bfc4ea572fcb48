"""Written documents carry the same structured fields: a wrong type gets 422 naming the field
and nothing of the batch is written; compaction folds their values into the columns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from index.columns import KeywordColumn
from index.compact import compact
from index.delta import DeltaLog
from index.snapshot import load_snapshot
from tests.app.test_api import wait_ready
from tests.app.test_documents import wait_embedded

pytestmark = pytest.mark.model

KEY = "fields-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(index=root, api_key=KEY))) as c:
        wait_ready(c)
        yield c


def test_the_sample_index_has_an_inferred_category_field(root: Path) -> None:
    schema = load_snapshot(root).manifest.schema
    assert schema is not None and schema.by_name["category"].type == "keyword"


def test_a_field_of_the_wrong_type_gets_422_naming_it(client: TestClient, root: Path) -> None:
    batch = [
        {"id": "ok1", "title": "Copper kettle", "category": "kitchen"},
        {"id": "bad", "title": "Brass lamp", "category": 7},
    ]
    r = client.post("/documents", json=batch, headers=AUTH)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_document"
    assert "item 1" in error["message"] and "'category' must be a string" in error["message"]
    assert client.get("/documents/ok1").status_code == 404
    assert DeltaLog.open(root).last_seq() == 0


def test_compaction_folds_written_fields_into_the_columns(client: TestClient, root: Path) -> None:
    doc = {"id": "n1", "title": "Copper kettle", "text": "Boils.", "category": "kitchen"}
    assert client.post("/documents", json=doc, headers=AUTH).status_code == 201
    wait_embedded(client, "n1")  # compaction folds embedded documents
    before = load_snapshot(root)
    assert compact(root, DeltaLog.open(root), wait=True) is not None
    snap = load_snapshot(root)
    assert snap.n_docs == before.n_docs + 1
    column = snap.columns["category"]
    assert isinstance(column, KeywordColumn)
    row = snap.docs.lookup("n1")
    assert row is not None
    codes = column.codes[column.ptr[row] : column.ptr[row + 1]]
    assert [str(column.values[c]) for c in codes] == ["kitchen"]
