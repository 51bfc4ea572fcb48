"""The typed manifest: old manifests parse and write back byte for byte, a bad field is named,
and the facts other modules ask for are derived from it."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from index.core.errors import SnapshotError
from index.core.types import Document
from index.manifest import Manifest
from index.passages import PassageOptions
from index.snapshot import MANIFEST, BuildOptions, load_snapshot, resolve_version, write_snapshot
from index.vector_params import VectorOptions
from tests.conftest import make_corpus
from tests.fake_vectors import FINGERPRINT, build_with_vectors, precomputed

DATA = Path(__file__).parent / "data"
# Written by progsearch before the manifest was typed: SciFact with vectors and passages, and
# a compaction (it records `delta_seq` first).
OLD_MANIFESTS = ["manifest_v1_scifact.json", "manifest_v1_compacted.json"]
OLD_SNAPSHOT = Path("/tmp/sfp")
"""A whole SciFact snapshot built before the change, where the build machine keeps one."""

Json = dict[str, Any]


def _docs(n: int = 30) -> list[Document]:
    return [Document(r["_id"], r["title"], r["text"]) for r in make_corpus(n)]


@pytest.mark.parametrize("name", OLD_MANIFESTS)
def test_an_old_manifest_writes_back_byte_for_byte(name: str) -> None:
    text = (DATA / name).read_text()
    manifest = Manifest.from_json(json.loads(text))
    assert json.dumps(manifest.to_json(), indent=2) == text


def test_a_new_build_writes_what_it_parses(tmp_path: Path) -> None:
    folder = build_with_vectors(_docs(), tmp_path / "ix")
    text = (folder / MANIFEST).read_text()
    assert json.dumps(Manifest.from_json(json.loads(text)).to_json(), indent=2) == text
    # The same keys, in the same order, as a manifest written before.
    old = json.loads((DATA / OLD_MANIFESTS[1]).read_text())
    assert list(json.loads(text)) == [k for k in old if k != "delta_seq"]


def test_the_old_scifact_manifest_has_its_facts() -> None:
    manifest = Manifest.from_json(json.loads((DATA / OLD_MANIFESTS[0]).read_text()))
    assert manifest.n_docs == 5183 and manifest.delta_seq == 0
    assert manifest.has_vectors and manifest.has_passages
    assert manifest.encoder_fingerprint == "all-MiniLM-L6-v2@0.1.0:fp32-onnx:doc256"
    assert manifest.passage_options == PassageOptions(title=True, dtype="float16")
    params = manifest.index_params
    assert params is not None and (params.kind, params.count, params.dim) == ("flat", 5183, 384)
    options = manifest.vector_options
    assert options is not None and options.kind == "fp32" and options.hnsw_storage == "sq8"
    assert manifest.arrays["docs/id_ptr.npy"].shape == (5184,)


@pytest.mark.skipif(not OLD_SNAPSHOT.is_dir(), reason=f"no snapshot at {OLD_SNAPSHOT}")
def test_a_snapshot_built_before_the_typed_manifest_loads() -> None:
    snap = load_snapshot(OLD_SNAPSHOT, verify=True)
    assert snap.n_docs == len(snap.arrays["docs/id_ptr.npy"]) - 1 > 0
    assert snap.has_vectors and snap.has_passages


def test_a_keyword_only_snapshot_has_no_vector_facts(tmp_path: Path) -> None:
    write_snapshot(iter(_docs()), tmp_path / "ix", BuildOptions(workers=1))
    manifest = load_snapshot(tmp_path / "ix").manifest
    assert manifest.vectors is None and not manifest.has_vectors and not manifest.has_passages
    assert manifest.encoder_fingerprint == ""
    assert manifest.passage_options is None and manifest.index_params is None
    assert manifest.vector_options is None and manifest.passages is None


def test_a_snapshot_without_passages_has_vectors_only(tmp_path: Path) -> None:
    docs = _docs()
    options = BuildOptions(workers=1, vectors=VectorOptions(passages=None))
    pre = precomputed(docs, PassageOptions())  # its passage vectors go unused
    write_snapshot(iter(docs), tmp_path / "ix", options, precomputed=pre)
    manifest = load_snapshot(tmp_path / "ix").manifest
    assert manifest.has_vectors and not manifest.has_passages
    assert manifest.encoder_fingerprint == FINGERPRINT and manifest.passage_options is None


def _set(path: str, value: object) -> Callable[[Json], None]:
    *parents, key = path.split(".")

    def mutate(data: Json) -> None:
        for part in parents:
            data = data[part]
        data[key] = value

    return mutate


def _drop(path: str) -> Callable[[Json], None]:
    *parents, key = path.split(".")

    def mutate(data: Json) -> None:
        for part in parents:
            data = data[part]
        del data[key]

    return mutate


BAD = [
    (_drop("checksum"), "'checksum' is missing"),
    (_set("version", 7), "'version' is 7, not str"),
    (_set("counts.docs", "many"), "'counts.docs' is 'many', not int"),
    (_set("counts.docs", True), "'counts.docs' is True, not int"),
    (_drop("build_seconds.total"), "'build_seconds.total' is missing"),
    (_set("analyzer", []), "'analyzer' is [], not an object"),
    (_set("analyzer.stem", "yes"), "'analyzer.stem' is 'yes'"),
    (_set("analyzer.language", "klingon"), "'analyzer': unsupported analyzer"),
    (_set("bm25.k1", "1.2"), "'bm25.k1' is '1.2'"),
    (_set("bm25.extra", 1), "'bm25' is malformed"),
    (_set("delta_seq", -1), "'delta_seq' is -1"),
    (lambda d: d["arrays"].update({"docs/id_ptr.npy": 1}), "'arrays.docs/id_ptr.npy' is 1"),
    (
        lambda d: d["arrays"]["docs/id_ptr.npy"].update(shape=[-1]),
        "'arrays.docs/id_ptr.npy.shape' is [-1], not a shape",
    ),
    (_drop("vectors.encoder"), "'vectors.encoder' is missing"),
    (_drop("vectors.index"), "'vectors.index' is None, not an object"),
    (_set("vectors.index.count", "x"), "'vectors.index.count' is 'x'"),
    (_set("vectors.index.kind", "ivf"), "'vectors.index': vector index kind 'ivf'"),
    (_set("vectors.build.kind", "int4"), "'vectors.build.kind' is 'int4'"),
    (_set("vectors.build.cache_dir", 3), "'vectors.build.cache_dir' is 3"),
    (_set("vectors.build.passages.dtype", "int4"), "'vectors.build.passages': passage dtype"),
    (_drop("vectors.passages.options.title"), "'vectors.passages.options.title' is missing"),
    (_set("vectors.passages.options.splitter", "1"), "'vectors.passages.options.splitter'"),
    (_set("vectors.passages.count", 1.5), "'vectors.passages.count' is 1.5, not int"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD)
def test_a_malformed_manifest_names_the_field(
    mutate: Callable[[Json], None], message: str
) -> None:
    data = copy.deepcopy(json.loads((DATA / OLD_MANIFESTS[0]).read_text()))
    mutate(data)
    with pytest.raises(SnapshotError, match="manifest field ") as err:
        Manifest.from_json(data)
    assert message in str(err.value)


def test_loading_a_malformed_manifest_names_its_file_and_field(tmp_path: Path) -> None:
    folder = resolve_version(build_with_vectors(_docs(), tmp_path / "ix"))
    data = json.loads((folder / MANIFEST).read_text())
    data["vectors"]["index"]["dim"] = "sixteen"
    (folder / MANIFEST).write_text(json.dumps(data))
    field = r"manifest\.json: manifest field 'vectors\.index\.dim' is 'sixteen'"
    with pytest.raises(SnapshotError, match=field):
        load_snapshot(tmp_path / "ix")
