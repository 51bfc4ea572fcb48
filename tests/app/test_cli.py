from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from tests.conftest import make_corpus, write_jsonl


def _dataset(folder: Path) -> Path:
    folder.mkdir()
    docs = make_corpus(120, seed=11)
    write_jsonl(folder / "corpus.jsonl", docs)
    # Each query is a document's title, and that document is the one relevant answer.
    queries = [{"_id": f"q{i}", "text": docs[i]["title"]} for i in range(0, 120, 10)]
    write_jsonl(folder / "queries.jsonl", queries)
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(0, 120, 10))
    )
    return folder


def test_index_search_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset(tmp_path / "data")
    assert main(["index", str(data), "--out", str(tmp_path / "ix"), "--quiet", "--no-vectors"]) == 0
    assert "indexed 120 documents" in capsys.readouterr().out

    assert main(["search", str(tmp_path / "ix"), "insullin", "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["corrections"][0]["corrected"] == "insulin"
    assert len(out["keyword"]["hits"]) == 3 and out["keyword"]["hits"][0]["rank"] == 1

    assert (
        main(["eval", str(tmp_path / "ix"), "--dataset", str(data), "--split", "test", "--json"])
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"keyword"}
    assert set(metrics["keyword"]) == {"ndcg@10", "recall@100", "mrr@10"}
    # Titles are weighted in BM25, so a title query finds its own document near the top.
    assert metrics["keyword"]["recall@100"] == 1.0
    assert metrics["keyword"]["ndcg@10"] > 0.5

    assert main(["verify", str(tmp_path / "ix")]) == 0


def test_errors_are_reported_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text('{"id": "a", "text": "ok"}\n{oops\n')
    assert (
        main(["index", str(src), "--out", str(tmp_path / "ix"), "--on-error", "stop", "--quiet"])
        == 2
    )
    err = capsys.readouterr().err
    assert "docs.jsonl:2: malformed JSON" in err and "Traceback" not in err
    assert not (tmp_path / "ix" / "CURRENT").exists()

    assert main(["search", str(tmp_path / "nothing"), "q"]) == 2
    assert "not a progsearch index" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "nothing"), "q", "-k", "0"]) == 2


def test_skip_bad_lines_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text('{"id": "a", "text": "kinase"}\n{oops\n{"id": "b", "text": "kinase"}\n')
    assert main(["index", str(src), "--out", str(tmp_path / "ix"), "--quiet", "--no-vectors"]) == 0
    captured = capsys.readouterr()
    assert "indexed 2 documents" in captured.out and "skipped 1 bad lines" in captured.err
