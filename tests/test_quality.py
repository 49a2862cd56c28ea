"""The clustering-quality benchmark on the committed subset, holding a floor: a change that
makes persons worse than this fails CI."""

from __future__ import annotations

import pytest

from bench.quality import embed, scores, table
from tests.conftest import PHOTOS


def test_scores_are_the_textbook_bcubed_and_pairwise_values() -> None:
    truth = ["a", "a", "a", "b", "b"]
    assert scores(truth, ["x", "x", "x", "y", "y"])["f"] == pytest.approx(1.0)
    split = scores(truth, ["x", "x", "z", "y", "y"])  # one of a's faces on its own
    assert split["precision"] == pytest.approx(1.0)
    assert split["recall"] == pytest.approx((2 / 3 * 2 + 1 / 3 + 1 + 1) / 5)
    merged = scores(truth, ["x"] * 5)
    assert merged["recall"] == pytest.approx(1.0) and merged["persons"] == 1
    assert merged["pairwise_f"] == pytest.approx(2 * 0.4 * 1 / 1.4)


def test_quality_floor_on_the_committed_subset(monkeypatch, model_root) -> None:
    monkeypatch.setenv("FACEPIC_MODEL_ROOT", str(model_root))
    photos, without = embed(PHOTOS)
    assert without == 0 and len(photos) == 21
    results = table(photos, without, 0.4, "buffalo_s")
    shipped, baseline, reclustered = results["shipped"], results["naive"], results["recluster"]
    assert shipped["precision"] >= 0.99 and shipped["recall"] >= 0.99
    assert shipped["persons"] == 7
    assert shipped["f"] >= baseline["f"]
    assert reclustered["f"] >= shipped["f"] and reclustered["persons"] == 7
    assert results["recluster*"]["f_min"] >= 0.99  # arrival order does not matter here
