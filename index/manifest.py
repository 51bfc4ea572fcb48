"""A snapshot's manifest as a typed value: read and checked once, when the snapshot loads.

`Manifest.from_json` turns ``manifest.json`` into frozen dataclasses and raises `SnapshotError`
naming the first field that is missing or of the wrong type; `Manifest.to_json` gives back the
same keys and values, in the order the file has always had, so the format does not change.
What other modules need to know about a snapshot (whether it has vectors or passages, the
encoder that embedded it, the options of its passages, the options it was built with) are
properties here, derived in this one place.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from index.analyzer import AnalyzerSettings
from index.core.bm25 import BM25Params
from index.core.errors import SnapshotError, SourceError
from index.passages import PassageOptions
from index.schema import Schema
from index.vector_params import IndexParams, VectorOptions

__all__ = [
    "ArrayEntry",
    "BuildSeconds",
    "Counts",
    "FileEntry",
    "Manifest",
    "PassagesEntry",
    "VectorsEntry",
]

T = TypeVar("T")
Json = dict[str, Any]


def _object(value: object, where: str) -> Json:
    if not isinstance(value, dict):
        raise SnapshotError(f"manifest field {where!r} is {value!r}, not an object")
    return value


def _get(obj: Json, key: str, kind: type[T], where: str = "") -> T:
    """`obj[key]`, which must be a `kind` (a float may be written as an integer)."""
    name = f"{where}.{key}" if where else key
    if key not in obj:
        raise SnapshotError(f"manifest field {name!r} is missing")
    value = obj[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    # bool is an int in Python, never in a manifest.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise SnapshotError(f"manifest field {name!r} is {value!r}, not {kind.__name__}")
    return value


def _matches(value: object, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin is Literal:
        return value in get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint in (int, str):
        return isinstance(value, hint) and not isinstance(value, bool)
    return True  # a nested part (a path, passage options) is checked where it is built


def _check_fields(part: object, where: str) -> None:
    """Each field of a part built with `cls(**data)` holds a value of its declared type."""
    hints = get_type_hints(type(part))
    for f in fields(part):  # type: ignore[arg-type]
        value = getattr(part, f.name)
        if not _matches(value, hints[f.name]):
            raise SnapshotError(f"manifest field '{where}.{f.name}' is {value!r}")


def _schema(data: Json) -> Schema:
    try:
        return Schema.from_json(data)
    except SourceError as exc:
        raise SnapshotError(str(exc)) from None


def _parsed(where: str, parse: Callable[[Json], T], value: object, *, check: bool = False) -> T:
    """`parse(value)`, the error (from a part's own parser) naming the field; `check`: then
    check each field's type (for parts built with `cls(**data)`, which does not)."""
    data = _object(value, where)
    try:
        part = parse(data)
    except KeyError as exc:
        raise SnapshotError(f"manifest field '{where}.{exc.args[0]}' is missing") from exc
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"manifest field {where!r} is malformed: {exc}") from exc
    except SnapshotError as exc:
        if str(exc).startswith("manifest field "):
            raise
        raise SnapshotError(f"manifest field {where!r}: {exc}") from exc
    if check:
        _check_fields(part, where)
    return part


@dataclass(frozen=True)
class BuildSeconds:
    keyword: float
    total: float

    @classmethod
    def from_json(cls, data: Json) -> BuildSeconds:
        return cls(*(_get(data, f.name, float, "build_seconds") for f in fields(cls)))


@dataclass(frozen=True)
class Counts:
    docs: int
    terms: int
    surfaces: int
    postings: int

    @classmethod
    def from_json(cls, data: Json) -> Counts:
        return cls(*(_get(data, f.name, int, "counts") for f in fields(cls)))


@dataclass(frozen=True)
class ArrayEntry:
    """What an array file must hold; loading compares dtype and shape, verifying the sum."""

    dtype: str
    shape: tuple[int, ...]
    sha256: str

    def to_json(self) -> Json:
        return {"dtype": self.dtype, "shape": list(self.shape), "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: Json, where: str) -> ArrayEntry:
        shape = _get(data, "shape", list, where)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise SnapshotError(f"manifest field '{where}.shape' is {shape!r}, not a shape")
        return cls(_get(data, "dtype", str, where), tuple(shape), _get(data, "sha256", str, where))


@dataclass(frozen=True)
class FileEntry:
    """A file that is not an array (the document store, an HNSW graph): its checksum."""

    sha256: str

    def to_json(self) -> Json:
        return {"sha256": self.sha256}


def _passage_options(data: Json) -> PassageOptions:
    """The options' own fields; the splitter and pairs written next to them are the entry's."""
    return PassageOptions(data["title"], data["dtype"])


@dataclass(frozen=True)
class PassagesEntry:
    count: int
    encoder: str
    options: PassageOptions
    splitter: int
    """Version of the sentence splitter that cut them (`index.passages.SPLITTER_VERSION`)."""
    pairs: str
    batch_size: int

    def to_json(self) -> Json:
        return {
            "count": self.count,
            "encoder": self.encoder,
            "options": {**asdict(self.options), "splitter": self.splitter, "pairs": self.pairs},
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_json(cls, data: Json) -> PassagesEntry:
        where, opts = "vectors.passages", "vectors.passages.options"
        options = _object(data.get("options"), opts)
        return cls(
            count=_get(data, "count", int, where),
            encoder=_get(data, "encoder", str, where),
            options=_parsed(opts, _passage_options, options, check=True),
            splitter=_get(options, "splitter", int, opts),
            pairs=_get(options, "pairs", str, opts),
            batch_size=_get(data, "batch_size", int, where),
        )


def _build_json(options: VectorOptions) -> Json:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}


def _build_options(data: Json) -> VectorOptions:
    """The vector options a build recorded; fields this version does not know are dropped
    (they were an older build's), missing ones take today's defaults."""
    known = {f.name for f in fields(VectorOptions)}
    build = {k: v for k, v in data.items() if k in known}
    passages = build.pop("passages", None)
    cache_dir = build.pop("cache_dir", None)
    if passages is not None:
        passages = _parsed("vectors.build.passages", _passage_options, passages, check=True)
    if cache_dir is not None and not isinstance(cache_dir, str):
        raise SnapshotError(f"manifest field 'vectors.build.cache_dir' is {cache_dir!r}")
    return VectorOptions(
        **build, cache_dir=Path(cache_dir) if cache_dir else None, passages=passages
    )


@dataclass(frozen=True)
class VectorsEntry:
    encoder: str
    """Fingerprint of the encoder that embedded the documents."""
    document_text: str
    index: IndexParams
    build: VectorOptions
    passages: PassagesEntry | None = None

    def to_json(self) -> Json:
        out: Json = {
            "encoder": self.encoder,
            "document_text": self.document_text,
            "index": self.index.to_dict(),
            "build": _build_json(self.build),
        }
        if self.passages is not None:
            out["passages"] = self.passages.to_json()
        return out

    @classmethod
    def from_json(cls, data: Json) -> VectorsEntry:
        # The vector stage pulls in FAISS: imported only for a snapshot that has vectors.

        passages = data.get("passages")
        return cls(
            encoder=_get(data, "encoder", str, "vectors"),
            document_text=_get(data, "document_text", str, "vectors"),
            index=_parsed("vectors.index", IndexParams.from_dict, data.get("index"), check=True),
            build=_parsed("vectors.build", _build_options, data.get("build"), check=True),
            passages=_parsed("vectors.passages", PassagesEntry.from_json, passages)
            if passages
            else None,
        )


@dataclass(frozen=True)
class Manifest:
    format_version: int
    version: str
    created: str
    build_seconds: BuildSeconds
    analyzer: AnalyzerSettings
    bm25: BM25Params
    counts: Counts
    avg_doc_len: float
    vectors: VectorsEntry | None
    arrays: Mapping[str, ArrayEntry]
    """Every ``.npy`` file, by path inside the version folder."""
    files: Mapping[str, FileEntry]
    checksum: str
    """sha256 of the files' checksums: the content's identity (it names the version)."""
    delta_seq: int = 0
    """The last delta log seq a compaction folded into this snapshot (0: none)."""
    schema: Schema | None = None
    """The structured fields, stored as columns in ``fields/`` (None: a snapshot without)."""
    extra: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))
    """Fields this version does not know, kept as they were."""

    # -- what the rest of the code asks ---------------------------------------------------
    @property
    def n_docs(self) -> int:
        return self.counts.docs

    @property
    def has_vectors(self) -> bool:
        return self.vectors is not None

    @property
    def passages(self) -> PassagesEntry | None:
        return self.vectors.passages if self.vectors is not None else None

    @property
    def has_passages(self) -> bool:
        return self.passages is not None

    @property
    def encoder_fingerprint(self) -> str:
        """The encoder that embedded the documents ("" without vectors): vectors made by
        another are not comparable with these."""
        return self.vectors.encoder if self.vectors is not None else ""

    @property
    def index_params(self) -> IndexParams | None:
        return self.vectors.index if self.vectors is not None else None

    @property
    def vector_options(self) -> VectorOptions | None:
        """The options the vectors were built with (None: a keyword-only snapshot)."""
        return self.vectors.build if self.vectors is not None else None

    @property
    def passage_options(self) -> PassageOptions | None:
        passages = self.passages
        return passages.options if passages is not None else None

    # -- JSON -----------------------------------------------------------------------------
    def to_json(self) -> Json:
        """The manifest as written: `delta_seq` (a compaction's) first, then the build's
        fields in their historical order."""
        head: Json = {**self.extra}
        if self.delta_seq:
            head["delta_seq"] = self.delta_seq
        return {
            **head,
            "format_version": self.format_version,
            "version": self.version,
            "created": self.created,
            "build_seconds": asdict(self.build_seconds),
            "analyzer": self.analyzer.to_json(),
            "bm25": self.bm25.to_json(),
            "counts": asdict(self.counts),
            "avg_doc_len": self.avg_doc_len,
            "vectors": self.vectors.to_json() if self.vectors is not None else None,
            "arrays": {name: entry.to_json() for name, entry in self.arrays.items()},
            "files": {name: entry.to_json() for name, entry in self.files.items()},
            "checksum": self.checksum,
            **({"schema": self.schema.to_json()} if self.schema is not None else {}),
        }

    @classmethod
    def from_json(cls, data: object) -> Manifest:
        """Parse and check a manifest (its format version checked by the caller first)."""
        obj = _object(data, "(manifest)")
        arrays = _object(obj.get("arrays"), "arrays")
        files = _object(obj.get("files", {}), "files")
        vectors = obj.get("vectors")
        known = {f.name for f in fields(cls)} - {"extra"}
        delta_seq = _get(obj, "delta_seq", int) if "delta_seq" in obj else 0
        if delta_seq < 0:
            raise SnapshotError(f"manifest field 'delta_seq' is {delta_seq}, not a seq")
        return cls(
            format_version=_get(obj, "format_version", int),
            version=_get(obj, "version", str),
            created=_get(obj, "created", str),
            build_seconds=_parsed(
                "build_seconds", BuildSeconds.from_json, obj.get("build_seconds")
            ),
            analyzer=_parsed(
                "analyzer", AnalyzerSettings.from_json, obj.get("analyzer"), check=True
            ),
            bm25=_parsed("bm25", BM25Params.from_json, obj.get("bm25"), check=True),
            counts=_parsed("counts", Counts.from_json, obj.get("counts")),
            avg_doc_len=_get(obj, "avg_doc_len", float),
            vectors=_parsed("vectors", VectorsEntry.from_json, vectors) if vectors else None,
            arrays=types.MappingProxyType(
                {
                    name: ArrayEntry.from_json(_object(e, f"arrays.{name}"), f"arrays.{name}")
                    for name, e in arrays.items()
                }
            ),
            files=types.MappingProxyType(
                {
                    name: FileEntry(
                        _get(_object(e, f"files.{name}"), "sha256", str, f"files.{name}")
                    )
                    for name, e in files.items()
                }
            ),
            checksum=_get(obj, "checksum", str),
            delta_seq=delta_seq,
            schema=_parsed("schema", _schema, obj["schema"]) if "schema" in obj else None,
            extra=types.MappingProxyType({k: v for k, v in obj.items() if k not in known}),
        )
