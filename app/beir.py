"""BEIR evaluation data: queries and relevance judgements (the corpus is an `index.sources`)."""

from __future__ import annotations

import json
from pathlib import Path

from index.core.errors import SourceError

__all__ = ["read_qrels", "read_queries", "split_queries"]


def read_queries(path: Path) -> dict[str, str]:
    """`queries.jsonl` as {query id: text}."""
    queries: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                queries[str(obj["_id"])] = str(obj["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise SourceError(f"bad query record: {exc}", path=str(path), line=line_no) from exc
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """A qrels TSV (header `query-id corpus-id score`) as {query id: {doc id: grade}}."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.rstrip("\n").split("\t")
            if (line_no == 1 and parts[:1] == ["query-id"]) or not line.strip():
                continue
            if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
                raise SourceError(
                    "expected query-id, corpus-id and an integer score, tab-separated",
                    path=str(path),
                    line=line_no,
                )
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def split_queries(dataset: Path, split: str) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """The judged queries of one split, with their judgements."""
    qrels_path = dataset / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise SourceError(f"no qrels for split {split!r}", path=str(qrels_path))
    qrels = read_qrels(qrels_path)
    queries = read_queries(dataset / "queries.jsonl")
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise SourceError(
            f"{len(missing)} judged queries have no text, e.g. {missing[0]!r}",
            path=str(dataset / "queries.jsonl"),
        )
    return {q: queries[q] for q in qrels}, qrels
