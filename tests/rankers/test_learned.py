"""Stored ranking models name the features they were fitted on: a model from before a feature
was added loads and scores as it did, a model naming a feature that does not exist is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from index.core.errors import ModelError
from rankers.features import FEATURES, combine
from rankers.learned import (
    COLUMNS,
    LinearModel,
    TreeModel,
    columns_of,
    feature_matrix,
    model_from_text,
)

DATA = Path(__file__).parent / "data"
OLD_FEATURES = FEATURES[:10]


def old_model() -> tuple[TreeModel, dict[str, np.ndarray], np.ndarray]:
    """A LambdaMART model fitted (and its scores taken) when the enhanced phase had ten
    features; the probe's features as then, with the features added since."""
    data = json.loads((DATA / "tree_model_10_features.json").read_text())
    model = model_from_text(data["model"], ".txt")
    assert isinstance(model, TreeModel)
    rng = np.random.default_rng(0)
    probe = {n: np.asarray(v, dtype=np.float32) for n, v in data["features"].items()}
    size = len(next(iter(probe.values())))
    probe.update({n: rng.normal(size=size).astype(np.float32) for n in FEATURES if n not in probe})
    return model, probe, np.asarray(data["scores"])


def test_a_model_fitted_on_fewer_features_loads_and_scores_as_it_did() -> None:
    model, probe, scores = old_model()
    assert model.columns == columns_of(OLD_FEATURES) != COLUMNS
    np.testing.assert_allclose(model.score(probe), scores, rtol=1e-12)


def test_columns_are_read_by_name_in_the_models_order() -> None:
    rng = np.random.default_rng(1)
    feats = {n: rng.normal(size=6) for n in FEATURES}
    order = ("raw_dense", "z_keyword_rr", "z_bm25")
    x = feature_matrix(feats, order)
    np.testing.assert_allclose(x[:, 0], feats["dense"])
    bm25 = feats["bm25"]
    np.testing.assert_allclose(x[:, 2], (bm25 - bm25.mean()) / bm25.std())
    assert feature_matrix(feats).shape == (6, len(COLUMNS)) and len(COLUMNS) == 2 * len(FEATURES)


@pytest.mark.parametrize("bad", ["raw_nope", "log_prf"])
def test_a_tree_model_over_an_unknown_column_is_refused(bad: str) -> None:
    data = json.loads((DATA / "tree_model_10_features.json").read_text())
    text = data["model"].replace("raw_prf", bad)
    assert bad in text
    with pytest.raises(ModelError, match=bad):
        model_from_text(text, ".txt")


def test_a_linear_model_stored_before_loads_and_scores_as_it_did() -> None:
    text = json.dumps({"format": 1, "kind": "linear", "weights": {"bm25_excess": 0.5, "top2": 0.5}})
    model = model_from_text(text, ".json")
    assert isinstance(model, LinearModel)
    rng = np.random.default_rng(2)
    feats = {n: rng.normal(size=9) for n in FEATURES}
    np.testing.assert_allclose(model.score(feats), combine(dict(feats), model.weights))
