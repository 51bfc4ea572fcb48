"""The demo catalog generator: determinism, shapes, coverage, wordings, judged queries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import app.catalog
from app.beir import split_queries
from app.catalog import generate_catalog, judged_queries, load_tables, write_jsonl, write_queries
from app.catalog.__main__ import main
from app.catalog.tables import COMMON
from app.catalog.types import Product, Tables
from app.catalog.wording import is_plural, title_case, with_article
from index.analyzer import Analyzer
from index.core.errors import SourceError
from index.sources import open_source

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tables() -> Tables:
    return load_tables()


@pytest.fixture(scope="module")
def products(tables: Tables) -> list[Product]:
    return generate_catalog(5000, 7, tables)


def _bytes(products: list[Product]) -> bytes:
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in products).encode()


def _by_concept(products: list[Product]) -> dict[str, list[Product]]:
    out: dict[str, list[Product]] = {}
    for p in products:
        out.setdefault(p["concept"], []).append(p)
    return out


def test_all_names_exist() -> None:
    assert sorted(app.catalog.__all__) == sorted(
        name for name in app.catalog.__all__ if hasattr(app.catalog, name)
    )


def test_tables_are_rich_enough(tables: Tables) -> None:
    assert len(tables.categories) >= 15
    assert len(tables.concepts()) >= 250
    for concept in tables.concepts():
        assert len(concept.names) >= 2 and len(concept.uses) >= 3 and len(concept.asks) >= 1


def test_same_seed_gives_the_same_bytes(tables: Tables, products: list[Product]) -> None:
    assert _bytes(generate_catalog(5000, 7, tables)) == _bytes(products)


def test_another_seed_gives_another_catalog(tables: Tables) -> None:
    one, other = generate_catalog(1000, 7, tables), generate_catalog(1000, 8, tables)
    assert _bytes(other) != _bytes(one)
    assert sum(a["title"] != b["title"] for a, b in zip(other, one, strict=True)) > 900


def test_same_bytes_in_other_processes_whatever_the_hash_seed(tmp_path: Path) -> None:
    products = generate_catalog(1200, 3)
    write_jsonl(tmp_path / "c.jsonl", (dict(p) for p in products))
    write_queries(tmp_path / "q.jsonl", judged_queries(products))
    expected = {name: (tmp_path / name).read_bytes() for name in ("c.jsonl", "q.jsonl")}
    for hash_seed in ("1", "2"):
        child = tmp_path / hash_seed
        cmd = [sys.executable, "-m", "app.catalog", "--n", "1200", "--seed", "3"]
        cmd += ["--out", str(child / "c.jsonl"), "--queries", str(child / "q.jsonl")]
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)
        assert {name: (child / name).read_bytes() for name in expected} == expected


def test_count_and_field_shapes(products: list[Product]) -> None:
    assert len(products) == 5000
    for p in products:
        assert list(p) == ["id", "title", "text", "category", "brand", "concept", "attributes"]
        assert all(isinstance(v, str) and v for k, v in p.items() if k != "attributes")
        attrs = p["attributes"]
        assert isinstance(attrs["material"], str)
        assert isinstance(attrs["price"], float) and 0 < attrs["price"] < 5000
        assert isinstance(attrs["rating"], float) and 2.5 <= attrs["rating"] <= 5.0
        assert isinstance(attrs["reviews"], int) and attrs["reviews"] >= 0
        assert 2 <= p["text"].count(". ") + 1 <= 4 and p["text"].endswith(".")


def test_ids_and_titles_are_unique(products: list[Product]) -> None:
    assert len({p["id"] for p in products}) == len(products)
    assert [p["id"] for p in products[:3]] == ["p00001", "p00002", "p00003"]
    assert len({p["title"] for p in products}) == len(products)


def test_every_category_and_concept_present(tables: Tables, products: list[Product]) -> None:
    assert {p["category"] for p in products} == {c.name for c in tables.categories}
    counts = Counter(p["concept"] for p in products)
    assert set(counts) == {c.key for c in tables.concepts()}
    assert min(counts.values()) >= 5000 // len(tables.concepts())
    small = generate_catalog(len(tables.categories), 1, tables)
    assert {p["category"] for p in small} == {c.name for c in tables.categories}


def test_concepts_appear_in_several_wordings(tables: Tables, products: list[Product]) -> None:
    members = _by_concept(products)
    described_otherwise = 0
    for concept in tables.concepts():
        in_titles = {
            name
            for name in concept.names
            for p in members[concept.key]
            if title_case(name) in p["title"]
        }
        assert len(in_titles) == len(concept.names), concept.key
        for p in members[concept.key]:
            in_text = {n for n in concept.names if n in p["text"]}
            described_otherwise += bool(in_text) and not any(
                title_case(n) in p["title"] for n in in_text
            )
    assert described_otherwise > len(products) // 5


def test_asks_are_kept_out_of_the_products(tables: Tables, products: list[Product]) -> None:
    text = "\n".join(p["title"] + " " + p["text"] for p in products).lower()
    for concept in tables.concepts():
        for ask in concept.asks:
            assert ask.lower() not in text


def test_judged_queries_share_few_words_with_their_titles(
    tables: Tables, products: list[Product]
) -> None:
    queries = judged_queries(products, tables=tables)
    assert len(queries) == 50
    assert [q.id for q in queries[:2]] == ["q001", "q002"]
    assert len({q.concept for q in queries}) == 50
    assert len({q.category for q in queries}) == len(tables.categories)
    members = _by_concept(products)
    analyzer = Analyzer()
    overlaps = []
    for q in queries:
        assert q.relevant == {p["id"] for p in members[q.concept]}
        title_terms = {t for p in members[q.concept] for t in analyzer.terms(p["title"])}
        terms = analyzer.terms(q.text)
        overlaps.append(sum(t in title_terms for t in terms) / len(terms))
        assert overlaps[-1] == pytest.approx(q.overlap, abs=1e-3) and q.overlap <= 0.25
    assert sum(overlaps) / len(overlaps) < 0.1


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("storm-proof hardshell for hill walking", "Storm-Proof Hardshell for Hill Walking"),
        ("3-in-1 charging stand", "3-in-1 Charging Stand"),
        ("50 mm f/1.8 lens", "50 mm f/1.8 Lens"),
        ("USB-C power bank", "USB-C Power Bank"),
        ("chef's knife", "Chef's Knife"),
        ("eau de parfum", "Eau de Parfum"),
        ("espresso dialling in", "Espresso Dialling In"),
    ],
)
def test_title_case(phrase: str, expected: str) -> None:
    assert title_case(phrase) == expected


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("espresso machine", "an espresso machine"),
        ("USB-C hub", "a USB-C hub"),
        ("LED lantern", "an LED lantern"),
        ("HEPA air purifier", "a HEPA air purifier"),
        ("14-inch laptop", "a 14-inch laptop"),
        ("800-fill jacket", "an 800-fill jacket"),
        ("18 V drill", "an 18 V drill"),
        ("one-pot cooker", "a one-pot cooker"),
        ("e-reader", "an e-reader"),
        ("ultrabook", "an ultrabook"),
    ],
)
def test_with_article(phrase: str, expected: str) -> None:
    assert with_article(phrase) == expected


@pytest.mark.parametrize(
    ("phrase", "plural"),
    [
        ("hiking socks", True),
        ("catnip mice", True),
        ("spice jars with labels", True),
        ("all-mountain skis", True),
        ("French press", False),
        ("prime lens", False),
        ("teapot with infuser", False),
    ],
)
def test_is_plural(phrase: str, plural: bool) -> None:
    assert is_plural(phrase) is plural


def test_a_bad_table_is_refused_with_its_file_and_concept(tmp_path: Path) -> None:
    source = ROOT / "app" / "catalog" / "data"
    (tmp_path / COMMON).write_text((source / COMMON).read_text())
    (tmp_path / "bad.toml").write_text(
        'name = "Bad"\nbrands = ["A", "B"]\nmaterials = ["wood"]\n\n'
        '[[concepts]]\nkey = "thing"\nnames = ["thing"]\nuses = ["a", "b", "c"]\n'
        'features = ["x", "y", "z"]\nprice = [1, 2]\nask = ["q"]\n'
    )
    with pytest.raises(SourceError, match=r"bad\.toml \[thing\].*'names' needs at least 2"):
        load_tables(tmp_path)


def test_cli_writes_what_progsearch_reads(tmp_path: Path) -> None:
    out, queries, beir = tmp_path / "c.jsonl", tmp_path / "q.jsonl", tmp_path / "beir"
    assert (
        main(["--out", str(out), "--n", "600", "--queries", str(queries), "--beir", str(beir)]) == 0
    )
    reader = open_source(out, on_error="stop")
    docs = list(reader)
    assert len(docs) == 600 and not reader.problems
    assert set(docs[0].fields) == {"category", "brand", "concept", "attributes"}
    lines = [json.loads(line) for line in queries.read_text().splitlines()]
    assert lines and set(lines[0]) == {"id", "query", "relevant", "concept", "category", "overlap"}
    assert lines[0]["relevant"] == sorted(lines[0]["relevant"])
    texts, qrels = split_queries(beir, "test")
    assert list(texts) == [line["id"] for line in lines]
    assert sorted(qrels[lines[0]["id"]]) == lines[0]["relevant"]
    assert len(list(open_source(beir))) == 600


def test_cli_needs_something_to_write(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--n", "10"])
    assert "nothing to write" in capsys.readouterr().err


def test_records_carry_the_shipped_schema_fields(products: list[Product]) -> None:
    from app.catalog.files import SCHEMA, catalog_record
    from index.schema import Schema

    schema = Schema.from_toml(SCHEMA)
    assert {"category", "brand", "price", "rating", "in_stock", "attributes"} <= set(
        schema.by_name)
    records = [catalog_record(p) for p in products]
    for record in records:
        schema.check(record)  # raises on a value of the wrong type
        assert "attributes" in record and all(":" in a for a in record["attributes"])
    share = sum(r["in_stock"] for r in records) / len(records)
    assert 0.8 < share < 0.95
    assert [catalog_record(p) for p in products[:50]] == records[:50]  # deterministic
