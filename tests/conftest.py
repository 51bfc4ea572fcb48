"""Shared fixtures: a small generated corpus and an index built from it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from index.snapshot import BuildOptions, Snapshot, load_snapshot, write_snapshot
from index.sources import open_source

WORDS = """
    protein cell gene expression cancer tumor patient therapy vitamin deficiency diabetes
    insulin glucose mouse model receptor signaling pathway immune response infection virus
    bacteria antibiotic resistance mutation dna rna sequence binding kinase inhibitor dose
    clinical trial risk mortality cohort study blood pressure heart muscle brain neuron memory
    sleep obesity diet exercise inflammation stem tissue regeneration enzyme metabolism
""".split()  # noqa: SIM905


def make_corpus(n_docs: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    docs = []
    for i in range(n_docs):
        title = " ".join(rng.choices(WORDS, k=rng.randint(2, 6)))
        text = ". ".join(
            " ".join(rng.choices(WORDS, k=rng.randint(4, 12))).capitalize()
            for _ in range(rng.randint(1, 5))
        )
        docs.append({"_id": f"d{i}", "title": title, "text": text + "."})
    return docs


def write_jsonl(path: Path, records: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="session")
def corpus() -> list[dict[str, str]]:
    return make_corpus(300)


@pytest.fixture(scope="session")
def beir_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[dict[str, str]]) -> Path:
    folder = tmp_path_factory.mktemp("beir")
    write_jsonl(folder / "corpus.jsonl", corpus)
    return folder


@pytest.fixture(scope="session")
def snapshot_root(tmp_path_factory: pytest.TempPathFactory, beir_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("index")
    write_snapshot(open_source(beir_dir), root, BuildOptions(workers=1, chunk_size=64))
    return root


@pytest.fixture(scope="session")
def snapshot(snapshot_root: Path) -> Snapshot:
    return load_snapshot(snapshot_root)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


SAMPLE = Path(__file__).resolve().parent.parent / "app" / "data" / "sample.jsonl"


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 20-product sample with vectors: small enough to embed in seconds."""
    from index.vector_params import VectorOptions

    root = tmp_path_factory.mktemp("sample")
    options = BuildOptions(workers=1, vectors=VectorOptions(batch_size=8))
    write_snapshot(open_source(SAMPLE), root, options)
    return root
