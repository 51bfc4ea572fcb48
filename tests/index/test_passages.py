"""Passages: sentence splitting, the passage layout and its arrays, resumable embedding."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from index.core.errors import SnapshotError
from index.passages import (
    SENTENCE,
    TITLE,
    PassageOptions,
    layout_passages,
    pair_norms,
    passage_text,
    quantize,
    save_passages,
    split_sentences,
)
from index.vector_stage import build_passages


def _sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One sentence here without an end", ["One sentence here without an end"]),
        (
            "Cells grew quickly in culture. Mice were then treated daily.",
            ["Cells grew quickly in culture.", "Mice were then treated daily."],
        ),
        (  # abbreviations do not end a sentence
            "Several factors, e.g. Vitamin D, were measured. Results were mixed overall.",
            ["Several factors, e.g. Vitamin D, were measured.", "Results were mixed overall."],
        ),
        (
            "As shown by Smith et al. (2005) the effect is robust. It was replicated twice.",
            ["As shown by Smith et al. (2005) the effect is robust.", "It was replicated twice."],
        ),
        (
            "Samples came from the U.S. Army cohort of veterans. Follow-up lasted ten years.",
            ["Samples came from the U.S. Army cohort of veterans.", "Follow-up lasted ten years."],
        ),
        (
            "Patients on drug A vs. Placebo were compared. See Fig. 2 for the details now.",
            ["Patients on drug A vs. Placebo were compared.", "See Fig. 2 for the details now."],
        ),
        (  # decimals, and a lower-case word after a period ("E. coli")
            "The mean was 1.8 microm2/ms at 28 wk. E. coli strains were resistant to it.",
            ["The mean was 1.8 microm2/ms at 28 wk.", "E. coli strains were resistant to it."],
        ),
        (  # a p value ends a sentence; the closing bracket stays with it
            "The effect was large (p < 0.05). 22 patients dropped out of the trial.",
            ["The effect was large (p < 0.05).", "22 patients dropped out of the trial."],
        ),
        (
            "Does vitamin D prevent falls in the elderly? We tested it in a large trial!",
            ["Does vitamin D prevent falls in the elderly?", "We tested it in a large trial!"],
        ),
        (  # short fragments join the next sentence, or the previous one at the end
            "Methods. We randomized patients to two arms. (1).",
            ["Methods. We randomized patients to two arms. (1)."],
        ),
        (  # section breaks, real or as the two characters backslash and n
            "BACKGROUND Obesity is common in adults today\\n METHODS We ran a cohort study.",
            ["BACKGROUND Obesity is common in adults today", "METHODS We ran a cohort study."],
        ),
        (
            "The treatment failed in most cases.   \\n CONCLUSION More work is needed here.",
            ["The treatment failed in most cases.", "CONCLUSION More work is needed here."],
        ),
        ("", []),
        ("   ", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert _sentences(text) == expected


def test_layout_title_then_sentences() -> None:
    body = "First sentence is here. Second sentence is here. Third sentence is here."
    layout = layout_passages([("A title", body), ("", "Only one sentence in this body.")])
    assert layout.ptr == [0, 4, 5]
    assert layout.texts == [
        "A title",
        "First sentence is here.",
        "Second sentence is here.",
        "Third sentence is here.",
        "Only one sentence in this body.",
    ]
    assert layout.kinds == [TITLE, SENTENCE, SENTENCE, SENTENCE, SENTENCE]


def test_pair_norms_only_within_a_document() -> None:
    layout = layout_passages([("T", "Alpha beta gamma delta. Epsilon zeta eta theta."), ("U", "")])
    vectors = np.eye(4, dtype=np.float32)[[0, 1, 2, 3]]
    ptr = np.asarray(layout.ptr, dtype=np.int64)
    kinds = np.asarray(layout.kinds, dtype=np.uint8)
    assert kinds.tolist() == [TITLE, SENTENCE, SENTENCE, TITLE]
    # Sentences 1 and 2 are a pair (orthogonal unit vectors: |a + b| = sqrt 2); nothing else is.
    np.testing.assert_allclose(pair_norms(vectors, kinds, ptr), [0, np.sqrt(2), 0, 0], rtol=1e-6)


def test_spans_are_utf8_byte_offsets_into_the_blob() -> None:
    docs = [("β-cells in Zürich", "Insulin from β-cells fell by 30 %. Glucose rose — as expected.")]
    layout = layout_passages(docs)
    blob = np.frombuffer(bytes(layout.blob), dtype=np.uint8)
    spans = np.asarray(layout.spans, dtype=np.int64)
    assert [passage_text(blob, span) for span in spans] == layout.texts
    assert layout.texts == [
        "β-cells in Zürich",
        "Insulin from β-cells fell by 30 %.",
        "Glucose rose — as expected.",
    ]


def test_every_document_has_a_passage() -> None:
    layout = layout_passages([("", ""), ("Title only", "")], PassageOptions(title=False))
    assert layout.ptr == [0, 1, 2]
    assert layout.texts == ["", "Title only"]


def test_options_are_checked() -> None:
    with pytest.raises(SnapshotError, match="dtype"):
        PassageOptions(dtype="int4")


class FakeEncoder:
    """Deterministic unit vectors from the text, counting how many texts it encodes."""

    dim = 8
    fingerprint = "fake@1"

    def __init__(self) -> None:
        self.encoded = 0

    def encode_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.encoded += len(texts)
        rows = [np.random.default_rng(len(t) * 31 + sum(map(ord, t))).normal(size=8) for t in texts]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), 8)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_build_passages_writes_arrays_and_reuses_the_embedding(tmp_path: Path) -> None:
    fields = [("Kinase title", "Kinase inhibitors work. They block signaling."), ("T2", "Short.")]
    encoder = FakeEncoder()
    work = tmp_path / "work"
    entry = build_passages(fields, tmp_path / "v1", work, encoder, PassageOptions(), 2, False)
    assert entry["count"] == 5 and entry["encoder"] == "fake@1"
    folder = tmp_path / "v1" / "passages"
    ptr = np.load(folder / "ptr.npy")
    vectors = np.load(folder / "vectors.npy")
    assert ptr.tolist() == [0, 3, 5] and vectors.dtype == np.float16 and vectors.shape == (5, 8)
    blob, spans = np.load(folder / "text.npy"), np.load(folder / "span.npy")
    assert passage_text(blob, spans[4]) == "Short."
    restored = vectors.astype(np.float32) * np.load(folder / "scale.npy")[:, None]
    np.testing.assert_allclose(np.linalg.norm(restored, axis=1), 1, atol=1e-2)
    pair = np.load(folder / "pair_norm.npy")
    assert pair[1] > 0 and pair[[0, 2, 3, 4]].tolist() == [0, 0, 0, 0]
    assert encoder.encoded == 5
    # Same passages, same encoder: the finished embedding in the work folder is reused.
    build_passages(fields, tmp_path / "v2", work, encoder, PassageOptions(), 2, False)
    assert encoder.encoded == 5


@pytest.mark.parametrize("dtype", ["int8", "float16", "float32"])
def test_quantized_cosines_stay_close(dtype: str) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    q = vectors[0]
    stored, scale = quantize(vectors, dtype)
    assert stored.dtype == np.dtype(dtype) and scale.shape == (200,)
    sims = (stored.astype(np.float32) @ q) * scale
    np.testing.assert_allclose(sims, vectors @ q, atol=3e-3)


def test_save_refuses_a_vector_count_mismatch(tmp_path: Path) -> None:
    layout = layout_passages([("t", "Some body text that is long enough.")])
    with pytest.raises(SnapshotError, match="passage vectors"):
        save_passages(tmp_path, layout, np.zeros((1, 4), np.float32), PassageOptions())
