"""Metrics against hand-computed cases, absent tags, report files and plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from orpheus import evaluate as evaluation
from orpheus.errors import DataFormatError

# Tag "a": positives score 0.9 and 0.3, negatives 0.8 and 0.1. Of the 4 (positive, negative) pairs,
# 3 are ranked right -> ROC-AUC 3/4. Ranked list: + - + -  -> AP = 0.5 * 1/1 + 0.5 * 2/3 = 5/6.
# Tag "b": perfectly ranked -> 1.0 and 1.0. Tag "c": never positive (absent from the split).
LABELS = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]])
SCORES = np.array([[0.9, 0.7, 0.2], [0.8, 0.4, 0.1], [0.3, 0.5, 0.6], [0.1, 0.2, 0.35]])
TAGS = ("a", "b", "c")


def test_per_tag_matches_hand_computation():
    a, b, c = evaluation.per_tag_scores(LABELS, SCORES, TAGS, threshold=0.5)
    assert a.roc_auc == pytest.approx(0.75)
    assert a.pr_auc == pytest.approx(5 / 6)
    assert (a.positives, a.negatives) == (2, 2)
    # threshold 0.5: predictions 1,1,0,0 vs labels 1,0,1,0 -> accuracy 2/4, recall 1/2
    assert a.accuracy == pytest.approx(0.5) and a.recall == pytest.approx(0.5)
    assert b.roc_auc == pytest.approx(1.0) and b.pr_auc == pytest.approx(1.0)
    # b: predicted 1,0,1,0 vs 1,0,0,0 -> accuracy 3/4, recall 1
    assert b.accuracy == pytest.approx(0.75) and b.recall == pytest.approx(1.0)
    assert c.positives == 0 and math.isnan(c.roc_auc) and math.isnan(c.pr_auc) and math.isnan(c.recall)
    assert c.accuracy == pytest.approx(0.75)  # only the 0.6 score crosses the threshold


def test_summary_macro_skips_absent_tags_and_micro_pools_pairs():
    metrics = evaluation.summary_metrics(LABELS, SCORES, TAGS)
    assert metrics["roc_auc_macro"] == pytest.approx((0.75 + 1.0) / 2)
    assert metrics["pr_auc_macro"] == pytest.approx((5 / 6 + 1.0) / 2)
    assert metrics["absent_tags"] == ["c"] and metrics["n_tags_evaluated"] == 2
    # micro: 3 positives (0.9, 0.3, 0.7) among 12 pairs; negatives above 0.3: 0.8, 0.4, 0.5, 0.6
    flat_l, flat_s = LABELS.ravel(), SCORES.ravel()
    pos, neg = flat_s[flat_l == 1], flat_s[flat_l == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert metrics["roc_auc_micro"] == pytest.approx(pairs / (len(pos) * len(neg)))
    order = np.argsort(-flat_s, kind="stable")
    hits = np.cumsum(flat_l[order])
    ap = np.sum((hits / np.arange(1, 13))[flat_l[order] == 1]) / 3
    assert metrics["pr_auc_micro"] == pytest.approx(ap)
    assert metrics["per_tag"][2]["roc_auc"] is None  # NaN becomes JSON null
    json.dumps(metrics, allow_nan=False)


def test_all_positive_tag_is_listed():
    labels = np.array([[1, 1], [1, 0]])
    metrics = evaluation.summary_metrics(labels, np.array([[0.2, 0.9], [0.3, 0.1]]), ("always", "x"))
    assert metrics["all_positive_tags"] == ["always"]
    assert metrics["roc_auc_macro"] == pytest.approx(1.0)


def test_bad_arrays_are_clear_errors():
    with pytest.raises(DataFormatError, match="one column per tag"):
        evaluation.summary_metrics(LABELS, SCORES[:, :2], TAGS)
    with pytest.raises(DataFormatError, match="0/1"):
        evaluation.summary_metrics(LABELS * 2, SCORES, TAGS)
    with pytest.raises(DataFormatError, match="NaN"):
        evaluation.summary_metrics(LABELS, SCORES * np.nan, TAGS)


def test_pca_tag_map_separates_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0] * 8, [-5.0] * 8])
    vectors = np.concatenate([centres[0] + rng.normal(0, 0.1, (4, 8)), centres[1] + rng.normal(0, 0.1, (4, 8))])
    coords = evaluation.tag_map_coordinates(vectors.T, "pca")
    assert coords.shape == (8, 2)
    first = np.sign(coords[:4, 0])
    assert len(set(first)) == 1 and set(np.sign(coords[4:, 0])) == {-first[0]}
    tsne = evaluation.tag_map_coordinates(vectors.T, "tsne")
    d = np.linalg.norm(tsne[:, None] - tsne[None], axis=-1)
    assert d[:4, :4].max() < d[:4, 4:].min()


def test_write_report_files(tmp_path):
    rng = np.random.default_rng(1)
    labels = (rng.random((30, 5)) < 0.3).astype(int)
    labels[:, 4] = 0  # an absent tag
    scores = np.clip(labels * 0.5 + rng.random((30, 5)) * 0.6, 0, 1)
    tags = [f"tag{i}" for i in range(5)]
    metrics = evaluation.write_report(tmp_path, [f"T{i}" for i in range(30)], tags, labels, scores,
                                      threshold=0.4, kernel=rng.normal(size=(16, 5)))
    for name in ("roc_pr.png", "auc_per_tag.png", "threshold_per_tag.png", "tag_map.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["absent_tags"] == ["tag4"] and saved["roc_auc_macro"] == pytest.approx(metrics["roc_auc_macro"])
    rows = evaluation.read_per_tag_csv(tmp_path / "per_tag.csv")
    assert [r["tag"] for r in rows] == tags and rows[4]["roc_auc"] == ""
    assert int(rows[0]["positives"]) == labels[:, 0].sum()
    with np.load(tmp_path / "predictions.npz") as npz:
        assert list(npz["tids"][:2]) == ["T0", "T1"]
        np.testing.assert_allclose(npz["scores"], scores, atol=1e-6)
        np.testing.assert_array_equal(npz["labels"], labels)
    assert not list(tmp_path.glob(".*.tmp"))
