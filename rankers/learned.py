"""Learned rankings of the enhanced phase's candidates, fitted by `progsearch tune`.

A model scores the candidates of one query from the features `EnhancedRanker.features`
computes, the same dictionary the default weights combine, so a fitted model sees at query
time exactly what it was fitted on. Two kinds:

- `LinearModel`: weights on the simplex over z-scored features, what the default is;
- `TreeModel`: LambdaMART (LightGBM's ``lambdarank``) over `feature_matrix`, each feature
  z-scored over the query's candidates (comparable across queries) and raw (a cosine means
  the same in every query; BM25 less so, which the trees can learn).

A model's text (JSON, or LightGBM's model format) is what is stored (`rankers.model_store`);
its version is a digest of that text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
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
    "feature_matrix",
    "model_from_text",
]

F64 = npt.NDArray[np.float64]

NAMES = FEATURES
COLUMNS = tuple(f"z_{n}" for n in NAMES) + tuple(f"raw_{n}" for n in NAMES)
"""The columns of `feature_matrix`, the names LightGBM stores with a tree model."""
LINEAR_FORMAT = 1


def feature_matrix(features: Mapping[str, npt.ArrayLike]) -> F64:
    """One row per candidate: each feature z-scored over the candidates, then each raw."""
    z = [zscore(features[n]) for n in NAMES]
    raw = [np.asarray(features[n], dtype=np.float64) for n in NAMES]
    out: F64 = np.stack(z + raw, axis=1)
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
        names = tuple(booster.feature_name())
        if names != COLUMNS:
            raise ModelError(f"a tree model must be over the columns {COLUMNS}, not {names}")
        self.booster = booster

    @classmethod
    def from_text(cls, text: str) -> TreeModel:
        import lightgbm

        try:
            return cls(lightgbm.Booster(model_str=text))
        except lightgbm.basic.LightGBMError as exc:
            raise ModelError(f"not a LightGBM model: {exc}") from None

    def score(self, features: Mapping[str, npt.ArrayLike]) -> F64:
        x = feature_matrix(features)
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
