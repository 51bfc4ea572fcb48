"""Passages of a document for the enhanced phase: its title and its sentences.

Windows of two sentences are scored too, without being embedded: a pair is taken as the
normalized mean of its two sentence vectors, whose cosine with a query follows from the two
sentence cosines and the length of the vectors' sum (``pair_norm.npy``). Embedding the pairs
would triple the embedding work (each sentence encoded three times), the dearest part of a build.

A passage is a span of the document's text, so the snapshot stores the text once (a UTF-8 blob:
each document's title, a newline, its body) and each passage as a byte span of that blob. A hit's
best passage is then read, for its highlight, from the memory-mapped blob: no database read.

Arrays of ``passages/`` in a snapshot (P passages, D documents):

- ``ptr.npy``       int64 (D + 1,)  CSR offsets: document d owns passages ptr[d] .. ptr[d + 1]
- ``span.npy``      int64 (P, 2)    byte start and end of each passage in ``text.npy``
- ``kind.npy``      uint8 (P,)      0 title, 1 sentence
- ``text.npy``      uint8 (B,)      the UTF-8 blob
- ``vectors.npy``   float16 (P, d)  unit vectors of the passages (document encoder); or int8
- ``scale.npy``     float32 (P,)    per-vector scale: vector = vectors[i] * scale[i] (1 unless int8)
- ``pair_norm.npy`` float32 (P,)    |v_i + v_i+1| when passage i + 1 is the next sentence, else 0

Sentence splitting is tuned for scientific abstracts: a sentence ends at ``.``, ``!`` or ``?``
(closing brackets and quotes included) followed by white space and a capital letter, a digit or
an opening bracket, unless the word before the period is an abbreviation ("e.g.", "i.e.",
"et al.", "Fig.", "vs.", "U.S."). A decimal point never ends a sentence (no space follows it),
and a sentence start in lower case ("E. coli", "approx. five") is taken as no sentence start.
Fragments shorter than ``MIN_SENTENCE_CHARS`` (a stray "(1)." or "Methods.") join the next
sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index.core.errors import SnapshotError

__all__ = [
    "PASSAGES_DIR",
    "SENTENCE",
    "SPLITTER_VERSION",
    "TITLE",
    "PassageLayout",
    "PassageOptions",
    "layout_passages",
    "pair_norms",
    "passage_text",
    "quantize",
    "save_passages",
    "split_sentences",
]

PASSAGES_DIR = "passages"
SPLITTER_VERSION = 1
"""Bumped whenever the splitting rules change: passages (and their vectors) differ then."""
MIN_SENTENCE_CHARS = 20
DTYPES = ("int8", "float16", "float32")
TITLE = 0
SENTENCE = 1

# A candidate end: terminal punctuation, maybe closing brackets or quotes, then white space,
# or else a line break (a real one, or the two characters "\\n" that some corpora keep between
# the sections of structured abstracts); then, looked ahead, what can start a sentence.
_GAP = r"(?:\s|\\n)"
_END = re.compile(
    rf"(?:[.!?][)\]\"'\u201d\u2019]*({_GAP}+)|(\s*(?:\n|\\n){_GAP}*))"
    r"(?=[(\[\"'\u201c\u2018]?[A-Z0-9\u0391-\u03a9])"
)
_LAST_WORD = re.compile(r"(\S+)\Z")
_INITIALISM = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}")
ABBREVIATIONS = frozenset(
    {
        "al",
        "approx",
        "ca",
        "cf",
        "dr",
        "e.g",
        "eq",
        "eqs",
        "fig",
        "figs",
        "i.e",
        "incl",
        "jr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "ref",
        "refs",
        "resp",
        "sr",
        "st",
        "suppl",
        "tab",
        "v",
        "vs",
        "viz",
        "vol",
    }
)


def _is_abbreviation(before: str) -> bool:
    """Whether the text before a period ends with an abbreviation (so no sentence ends)."""
    m = _LAST_WORD.search(before)
    if m is None:
        return False
    word = m.group(1).lstrip("([\"'")
    return word.casefold() in ABBREVIATIONS or _INITIALISM.fullmatch(word) is not None


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``, stripped of white space."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _END.finditer(text):
        gap = 1 if m.group(1) is not None else 2
        if gap == 1 and text[m.start()] == "." and _is_abbreviation(text[start : m.start()]):
            continue
        spans.append((start, m.start(gap)))
        start = m.end(gap)
    spans.append((start, len(text)))
    spans = [_strip(text, s, e) for s, e in spans]
    spans = [(s, e) for s, e in spans if e > s]
    # Short fragments join the next sentence (the last one joins the previous).
    merged: list[tuple[int, int]] = []
    pending: tuple[int, int] | None = None
    for s, e in spans:
        if pending is not None:
            s, pending = pending[0], None
        if e - s < MIN_SENTENCE_CHARS:
            pending = (s, e)
            continue
        merged.append((s, e))
    if pending is not None:
        merged[-1:] = [(merged[-1][0] if merged else pending[0], pending[1])]
    return merged


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without white space (or literal "\\n") at either end."""
    while start < end:
        if text[start].isspace():
            start += 1
        elif text.startswith("\\n", start, end):
            start += 2
        else:
            break
    while end > start:
        if text[end - 1].isspace():
            end -= 1
        elif end - start >= 2 and text[end - 2 : end] == "\\n":
            end -= 2
        else:
            break
    return start, end


@dataclass(frozen=True)
class PassageOptions:
    title: bool = True
    """The title is a passage of its own."""
    dtype: str = "float16"
    """How passage vectors are stored. float16 keeps cosines within about 1e-3 of float32.
    int8 (symmetric, one scale per vector) is as good for ranking (same nDCG@10 on SciFact) at
    half the size again, and its conversion to float32 on the query path is several times
    faster than float16's (numpy has no fast float16 conversion); it is not the default yet
    because the live index (`rankers/live.py`) scores its new documents with float32 passage
    vectors, which then match a rebuilt float16 snapshot closely but an int8 one only to
    about 0.4 %."""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise SnapshotError(f"passage dtype {self.dtype!r} is unknown; one of {DTYPES}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "splitter": SPLITTER_VERSION, "pairs": "derived"}


@dataclass
class PassageLayout:
    """Passages of a corpus before embedding: their texts and where they live in the blob."""

    texts: list[str] = field(default_factory=list)
    ptr: list[int] = field(default_factory=lambda: [0])
    spans: list[tuple[int, int]] = field(default_factory=list)
    kinds: list[int] = field(default_factory=list)
    blob: bytearray = field(default_factory=bytearray)

    def add(self, title: str, text: str, options: PassageOptions) -> None:
        title, text = title.strip(), text.strip()
        base = len(self.blob)
        head = title.encode("utf-8")
        self.blob += head + b"\n" + text.encode("utf-8")
        if options.title and title:
            self._append(title, (base, base + len(head)), TITLE)
        body = base + len(head) + 1
        at, offset = 0, body  # byte offsets of character positions, counted incrementally
        for s, e in split_sentences(text):
            start = offset + len(text[at:s].encode("utf-8"))
            end = start + len(text[s:e].encode("utf-8"))
            self._append(text[s:e], (start, end), SENTENCE)
            at, offset = e, end
        if len(self.kinds) == self.ptr[-1]:
            # No passage yet (no body, and no title or titles left out): the title, even
            # empty, so every document has a passage.
            self._append(title, (base, base + len(head)), TITLE)
        self.ptr.append(len(self.kinds))

    def _append(self, text: str, span: tuple[int, int], kind: int) -> None:
        self.texts.append(text)
        self.spans.append(span)
        self.kinds.append(kind)


def pair_norms(
    vectors: npt.NDArray[Any], kinds: npt.NDArray[np.uint8], ptr: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """For a sentence followed by another sentence of the same document, the length of the sum
    of their (unit) vectors; 0 elsewhere.

    The window of two sentences i, i + 1 is then scored at query time as the normalized mean of
    their vectors, ``(s_i + s_{i+1}) / norm_i`` from the two sentence cosines, instead of
    embedding every pair: that would double the embedding work (each sentence embedded twice
    more), the dearest part of a build.
    """
    n = len(kinds)
    out = np.zeros(n, dtype=np.float32)
    if n < 2:
        return out
    last = np.zeros(n, dtype=bool)
    last[np.asarray(ptr[1:], dtype=np.int64) - 1] = True  # a document's last passage
    ok = (kinds[:-1] == SENTENCE) & (kinds[1:] == SENTENCE) & ~last[:-1]
    idx = np.flatnonzero(ok)
    for lo in range(0, idx.size, 65_536):  # bounded memory on large corpora
        i = idx[lo : lo + 65_536]
        a = np.asarray(vectors[i], dtype=np.float32)
        b = np.asarray(vectors[i + 1], dtype=np.float32)
        out[i] = np.linalg.norm(a + b, axis=1)
    return out


def layout_passages(
    fields: Iterable[tuple[str, str]], options: PassageOptions | None = None
) -> PassageLayout:
    """The passages of every document, given (title, text) in document order."""
    options = options or PassageOptions()
    layout = PassageLayout()
    for title, text in fields:
        layout.add(title, text, options)
    return layout


def save_passages(
    folder: Path, layout: PassageLayout, vectors: npt.NDArray[Any], options: PassageOptions
) -> None:
    """Write the ``passages/`` arrays of a snapshot into ``folder``."""
    if vectors.shape[0] != len(layout.texts):
        raise SnapshotError(f"{vectors.shape[0]} passage vectors for {len(layout.texts)} passages")
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "ptr.npy", np.asarray(layout.ptr, dtype=np.int64))
    np.save(folder / "span.npy", np.asarray(layout.spans, dtype=np.int64).reshape(-1, 2))
    kinds = np.asarray(layout.kinds, dtype=np.uint8)
    np.save(folder / "kind.npy", kinds)
    np.save(folder / "text.npy", np.frombuffer(bytes(layout.blob), dtype=np.uint8))
    stored, scale = quantize(np.asarray(vectors, dtype=np.float32), options.dtype)
    np.save(folder / "vectors.npy", stored)
    np.save(folder / "scale.npy", scale)
    ptr = np.asarray(layout.ptr, dtype=np.int64)
    restored = stored.astype(np.float32) * scale[:, None]
    np.save(folder / "pair_norm.npy", pair_norms(restored, kinds, ptr))


def quantize(
    vectors: npt.NDArray[np.float32], dtype: str
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float32]]:
    """Vectors as stored, and the per-vector scale that restores them (``stored * scale``):
    int8 maps each vector's largest magnitude to 127; float types keep a scale of 1."""
    if dtype != "int8":
        return vectors.astype(dtype), np.ones(len(vectors), dtype=np.float32)
    top = np.abs(vectors).max(axis=1) if len(vectors) else np.zeros(0, dtype=np.float32)
    scale = np.where(top > 0, top / 127.0, 1.0).astype(np.float32)
    stored = np.rint(vectors / scale[:, None]).clip(-127, 127).astype(np.int8)
    return stored, scale


def passage_text(blob: npt.NDArray[np.uint8], span: npt.NDArray[np.int64]) -> str:
    """The text of one passage, from the blob and its (start, end) byte span."""
    return bytes(blob[int(span[0]) : int(span[1])]).decode("utf-8")
