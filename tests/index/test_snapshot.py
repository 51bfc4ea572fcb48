from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.core.errors import SnapshotError, SourceError
from index.core.types import Document
from index.snapshot import CURRENT, BuildOptions, load_snapshot, resolve_version, write_snapshot
from index.sources import open_source
from tests.conftest import make_corpus, write_jsonl


@pytest.fixture
def built(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "corpus.jsonl", make_corpus(50))
    write_snapshot(open_source(tmp_path), tmp_path / "ix", BuildOptions(workers=1))
    return tmp_path / "ix"


def test_round_trip_is_memory_mapped(built: Path) -> None:
    snap = load_snapshot(built, verify=True)
    assert snap.n_docs == 50
    post_doc = snap.arrays["keyword/post_doc.npy"]
    assert isinstance(post_doc.base, np.memmap) and not post_doc.flags.writeable
    assert snap.external_ids([0, 49]) == ["d0", "d49"]
    doc = snap.docs.get(3)
    assert doc is not None and doc.id == "d3"
    assert snap.docs.lookup("d7") == 7
    assert snap.manifest.analyzer.language == "english"
    assert snap.manifest.bm25.to_json() == {
        "k1": 1.2, "b": 0.75, "title_weight": 2.0, "variant": "lucene"
    }
    assert snap.manifest.counts.docs == 50


def test_rebuild_swaps_current_and_keeps_one_old_version(built: Path, tmp_path: Path) -> None:
    first = resolve_version(built)
    write_jsonl(tmp_path / "corpus.jsonl", make_corpus(60, seed=9))
    for _ in range(2):
        write_snapshot(open_source(tmp_path), built, BuildOptions(workers=1))
    current = resolve_version(built)
    assert current != first and load_snapshot(built).n_docs == 60
    versions = [p for p in built.iterdir() if p.is_dir()]
    assert len(versions) == 2 and not any(p.name.startswith(".tmp") for p in built.iterdir())


def test_failed_build_leaves_the_current_version_whole(built: Path) -> None:
    before = (built / CURRENT).read_text()

    def exploding() -> Iterator[Document]:
        yield Document("x", "title", "text")
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError):
        write_snapshot(exploding(), built, BuildOptions(workers=1))
    assert (built / CURRENT).read_text() == before
    assert load_snapshot(built, verify=True).n_docs == 50
    assert not any(p.name.startswith(".tmp") for p in built.iterdir())


def test_truncated_array_is_named(built: Path) -> None:
    file = resolve_version(built) / "keyword" / "post_imp.npy"
    file.write_bytes(file.read_bytes()[:-8])
    with pytest.raises(SnapshotError, match=r"post_imp\.npy"):
        load_snapshot(built)


def test_garbage_header_is_named(built: Path) -> None:
    file = resolve_version(built) / "keyword" / "term_ptr.npy"
    file.write_bytes(b"garbage" + file.read_bytes()[7:])
    with pytest.raises(SnapshotError, match=r"term_ptr\.npy: cannot load"):
        load_snapshot(built)


def test_flipped_byte_found_by_verify(built: Path) -> None:
    file = resolve_version(built) / "keyword" / "post_doc.npy"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    load_snapshot(built)  # shapes still match: only the checksum can tell
    with pytest.raises(SnapshotError, match=r"post_doc\.npy: checksum mismatch"):
        load_snapshot(built, verify=True)


def test_unknown_format_version(built: Path) -> None:
    path = resolve_version(built) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(SnapshotError, match=r"manifest\.json: unknown format version 99"):
        load_snapshot(built)


def test_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="not a progsearch index"):
        load_snapshot(tmp_path)
    (tmp_path / CURRENT).write_text("../../etc\n")
    with pytest.raises(SnapshotError, match="which is missing"):
        load_snapshot(tmp_path)


def test_parallel_build_equals_serial(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "corpus.jsonl", make_corpus(400, seed=5))
    a = load_snapshot(
        write_snapshot(
            open_source(tmp_path), tmp_path / "a", BuildOptions(workers=1, chunk_size=1000)
        )
    )
    b = load_snapshot(
        write_snapshot(
            open_source(tmp_path), tmp_path / "b", BuildOptions(workers=2, chunk_size=37)
        )
    )
    assert a.manifest.checksum == b.manifest.checksum


def test_source_without_valid_documents_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text("{bad\n")
    with pytest.raises(SourceError, match="no valid document"):
        write_snapshot(open_source(src), tmp_path / "ix", BuildOptions(workers=1))
    assert not (tmp_path / "ix" / CURRENT).exists()


def test_small_blocks_in_parallel_equal_serial(tmp_path: Path) -> None:
    # Blocks of a few hundred bytes cut lines anywhere; bad lines land in every block.
    records = make_corpus(300, seed=3)
    lines = [json.dumps(r) for r in records]
    for i in range(0, len(lines), 37):
        lines.insert(i, "{broken")
    (tmp_path / "corpus.jsonl").write_text("\n".join(lines))
    serial, parallel = open_source(tmp_path), open_source(tmp_path)
    a = load_snapshot(write_snapshot(serial, tmp_path / "a", BuildOptions(workers=1)))
    b = load_snapshot(
        write_snapshot(parallel, tmp_path / "b", BuildOptions(workers=2, block_bytes=300))
    )
    # Same arrays and rows (the SQLite file itself records how many transactions wrote it).
    assert a.manifest.arrays == b.manifest.arrays
    assert a.docs.get_many(list(range(300))) == b.docs.get_many(list(range(300)))
    assert serial.problems == parallel.problems and len(serial.problems) == 9


@pytest.mark.parametrize("workers", [1, 2])
def test_duplicates_leave_no_trace(tmp_path: Path, workers: int) -> None:
    # A duplicate's words must not reach the vocabulary, even when its block numbered them.
    records = make_corpus(120, seed=4)
    dupes = [{"_id": f"d{i}", "title": f"uniqueword{i}", "text": f"onlyhere{i}"} for i in (5, 60)]
    mixed = records[:10] + dupes[:1] + records[10:70] + dupes[1:] + records[70:]
    write_jsonl(tmp_path / "clean.jsonl", records)
    write_jsonl(tmp_path / "mixed.jsonl", mixed)
    options = BuildOptions(workers=workers, block_bytes=2000)
    clean = load_snapshot(
        write_snapshot(open_source(tmp_path / "clean.jsonl"), tmp_path / "c", options)
    )
    reader = open_source(tmp_path / "mixed.jsonl")
    dirty = load_snapshot(write_snapshot(reader, tmp_path / "m", options))
    assert [p.split(": ", 1)[1] for p in reader.problems] == [
        "duplicate id 'd5' (first seen on line 6)",
        "duplicate id 'd60' (first seen on line 62)",
    ]
    for name, arr in clean.arrays.items():
        assert np.array_equal(arr, dirty.arrays[name]), name
    assert clean.docs.count() == dirty.docs.count() == 120


def test_stop_in_parallel_build_leaves_no_temporary_folder(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in make_corpus(200, seed=6)]
    lines.insert(150, "{broken")
    (tmp_path / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    root = tmp_path / "ix"
    source = open_source(tmp_path, on_error="stop")
    with pytest.raises(SourceError, match=r"corpus.jsonl:151: malformed JSON"):
        write_snapshot(source, root, BuildOptions(workers=2, block_bytes=500))
    assert list(root.iterdir()) == []


@pytest.mark.model
def test_loading_a_snapshot_with_vectors_imports_no_faiss(sample_root: Path) -> None:
    """Loading stays off the semantic stack (start-up answers keyword queries at once): the
    typed manifest's vector parameters live apart from FAISS and the encoder."""
    code = (
        "import sys\n"
        "from index.snapshot import load_snapshot\n"
        f"snap = load_snapshot({str(sample_root)!r})\n"
        "assert snap.manifest.has_vectors and snap.manifest.index_params is not None\n"
        "print(sorted(m for m in ('faiss', 'torch', 'sentence_transformers', 'onnxruntime')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
