"""The logistic confidence calibrator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rag.calibration import DEFAULT, Calibrator


def test_confidence_is_the_logistic_of_the_linear_score() -> None:
    c = Calibrator((0.5, 1.0, 2.0), -1.0, fitted_on="test")
    assert c.confidence(0.0, 0.0, 0.0) == pytest.approx(1 / (1 + math.e))
    assert c.confidence(2.0, 0.0, 0.0) == pytest.approx(0.5)
    assert c.confidence(1.0, 1.0, 1.0) == pytest.approx(1 / (1 + math.exp(-2.5)))
    assert 0.0 < c.confidence(-60.0, 0, 0) < 1e-12
    assert c.confidence(60.0, 0, 0) == pytest.approx(1.0)


def test_default_confidence_grows_with_score_lead_and_similarity() -> None:
    base = DEFAULT.confidence(2.0, 0.5, 0.5)
    assert DEFAULT.confidence(4.0, 0.5, 0.5) > base
    assert DEFAULT.confidence(2.0, 1.5, 0.5) > base
    assert DEFAULT.confidence(2.0, 0.5, 0.9) > base


def _synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correct answers have a higher fused score and lead; the dense similarity carries no signal."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    fused = rng.normal(3.0 * labels, 1.0)
    lead = rng.normal(1.5 * labels - 0.5, 0.5)
    dense = rng.uniform(0.2, 0.8, n)
    return np.column_stack([fused, lead, dense]), labels


def test_fit_learns_which_features_predict_a_correct_answer() -> None:
    x, y = _synthetic()
    c = Calibrator.fit(x.tolist(), y.tolist(), fitted_on="synthetic")
    assert c.fitted_on == "synthetic"
    assert c.coef[0] > 0.5 and c.coef[1] > 0.5
    assert abs(c.coef[2]) < 1.0
    predicted = np.array([c.confidence(*row) for row in x])
    assert ((predicted >= 0.5) == (y == 1)).mean() > 0.85
    assert predicted[y == 1].mean() > 0.7 > 0.3 > predicted[y == 0].mean()


def test_json_round_trip() -> None:
    x, y = _synthetic(seed=1)
    c = Calibrator.fit(x, y, fitted_on="kb calibrate 2024-05-01")
    text = c.to_json()
    assert json.loads(text)["fitted_on"] == "kb calibrate 2024-05-01"
    again = Calibrator.from_json(text)
    assert again == c
    assert again.confidence(1.0, 0.2, 0.5) == c.confidence(1.0, 0.2, 0.5)


def test_from_json_without_fitted_on() -> None:
    c = Calibrator.from_json('{"coef": [1, 2, 3], "intercept": -4}')
    assert c == Calibrator((1.0, 2.0, 3.0), -4.0, "")


@pytest.mark.parametrize("labels", [[1, 1, 1, 1], [0, 0, 0, 0]])
def test_fit_on_one_class_raises(labels: list[int]) -> None:
    features = [[1.0, 0.1, 0.5], [2.0, 0.2, 0.6], [3.0, 0.3, 0.7], [4.0, 0.4, 0.8]]
    with pytest.raises(ValueError, match="both correct and wrong"):
        Calibrator.fit(features, labels, fitted_on="x")
