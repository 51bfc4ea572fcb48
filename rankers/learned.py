"""Learned rankings of the enhanced phase's candidates, fitted by `progsearch tune`.

A model scores the candidates of one query from the features `EnhancedRanker.features`
computes, the same dictionary the default weights combine, so a fitted model sees at query
time exactly what it was fitted on. Two kinds:

- `LinearModel`: weights on the simplex over z-scored features, what the default is;
- `TreeModel`: LambdaMART (LightGBM's ``lambdarank``) over `feature_matrix`, each feature
  z-scored over the query's candidates (comparable across queries) and raw (a cosine means
  the same in every query; BM25 less so, which the trees can learn).

A model's text (JSON, or LightGBM's model format) is what is stored (`rankers.model_store`);
its version is a digest of that text. Each names the features it reads: the linear model's
weights are by name, and a tree model's columns (``z_<feature>``, ``raw_<feature>``, in the
order it was fitted on) are stored by LightGBM with its trees. A model is scored on its own
columns, so one fitted before a feature was added loads and scores as it did.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from index.core.errors import ModelError
from rankers.features import FEATURES, combine, weights_problem, zscore

__all__ = [
    "COLUMNS",
    "LinearModel",
    "RankModel",
    "TreeModel",
    "column_problem",
    "columns_of",
    "feature_matrix",
    "model_from_text",
]

F64 = npt.NDArray[np.float64]

def columns_of(names: Sequence[str]) -> tuple[str, ...]:
    """The columns of `feature_matrix` over features ``names``: each z-scored, then each raw."""
    return tuple(f"z_{n}" for n in names) + tuple(f"raw_{n}" for n in names)


COLUMNS = columns_of(FEATURES)
"""The columns a tree model is fitted on now, the names LightGBM stores with it."""
LINEAR_FORMAT = 1
_TRANSFORMS = ("z", "raw")


def column_problem(columns: Sequence[str]) -> str | None:
    """What is wrong with a tree model's columns (one that is not ``z_`` or ``raw_`` of a
    feature of :data:`FEATURES`), or None."""
    bad = [c for c in columns
           if c.partition("_")[0] not in _TRANSFORMS or c.partition("_")[2] not in FEATURES]
    if not columns or bad:
        return (f"a tree model's columns must be z_<feature> or raw_<feature> of the features "
                f"{FEATURES}; not {bad or list(columns)}")
    return None


def feature_matrix(features: Mapping[str, npt.ArrayLike],
                   columns: Sequence[str] = COLUMNS) -> F64:
    """One row per candidate, one column per name of ``columns`` (``z_<feature>``: the feature
    z-scored over the candidates; ``raw_<feature>``: as computed)."""
    out: F64 = np.stack([
        zscore(features[name]) if kind == "z" else np.asarray(features[name], dtype=np.float64)
        for kind, _, name in (c.partition("_") for c in columns)
    ], axis=1)  # fmt: skip
    return out


class RankModel(Protocol):
    @property
    def kind(self) -> str:
        """``linear`` or ``lambdamart``."""
        ...

    def score(self, features: Mapping[str, npt.ArrayLike]) -> F64:
        """A score per candidate (higher is better) from the enhanced features."""
        ...

    def to_text(self) -> str: ...

    @property
    def suffix(self) -> str: ...


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class LinearModel:
    weights: dict[str, float] = field(default_factory=dict)
    kind: str = "linear"

    def __post_init__(self) -> None:
        problem = weights_problem(self.weights)
        if problem is not None:
            raise ModelError(problem)

    def score(self, features: Mapping[str, npt.ArrayLike]) -> F64:
        return combine(dict(features), self.weights)

    def to_text(self) -> str:
        return json.dumps({"format": LINEAR_FORMAT, "kind": self.kind, "weights": self.weights},
                          sort_keys=True)

    @property
    def suffix(self) -> str:
        return ".json"


class TreeModel:
    """A LightGBM booster; LightGBM is imported only when a tree model is loaded or fitted."""

    kind = "lambdamart"

    def __init__(self, booster: Any) -> None:
        names = tuple(str(n) for n in booster.feature_name())
        problem = column_problem(names)
        if problem is not None:
            raise ModelError(problem)
        self.booster = booster
        self.columns = names
        """The columns it was fitted on, in order (`feature_matrix`)."""

    @classmethod
    def from_text(cls, text: str) -> TreeModel:
        import lightgbm

        try:
            return cls(lightgbm.Booster(model_str=text))
        except lightgbm.basic.LightGBMError as exc:
            raise ModelError(f"not a LightGBM model: {exc}") from None

    def score(self, features: Mapping[str, npt.ArrayLike]) -> F64:
        x = feature_matrix(features, self.columns)
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        out: F64 = np.asarray(self.booster.predict(x), dtype=np.float64)
        return out

    def to_text(self) -> str:
        text: str = self.booster.model_to_string()
        return text

    @property
    def suffix(self) -> str:
        return ".txt"


def model_from_text(text: str, suffix: str) -> RankModel:
    """A stored model back: JSON for a linear model, LightGBM's text for a tree model."""
    if suffix == ".txt":
        return TreeModel.from_text(text)
    try:
        data = json.loads(text)
        weights = {str(k): float(v) for k, v in data["weights"].items()}
        if data.get("format") != LINEAR_FORMAT or data.get("kind") != "linear":
            raise ValueError(f"format {data.get('format')!r}, kind {data.get('kind')!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"not a linear ranking model: {exc}") from None
    return LinearModel(weights)
