"""`orpheus test`: a run directory evaluated on a split of a shard folder (`run_test`), with its metrics, report files
and plots.

Inputs are plain numpy arrays, one row per track:
    labels:  int   [n_tracks, n_tags]  multi-hot ground truth (0/1)
    scores:  float [n_tracks, n_tags]  predicted probabilities in [0, 1]

Outputs (written atomically into the report folder):
    metrics.json      macro and micro ROC-AUC / PR-AUC, counts, the tags left out of the macro average
    per_tag.csv       tag, positives, negatives, roc_auc, pr_auc, accuracy, recall (at the threshold)
    predictions.npz   tids, tags, labels, scores
    roc_pr.png, auc_per_tag.png, threshold_per_tag.png, tag_map.png

ROC-AUC is sklearn's `roc_auc_score`; PR-AUC is average precision (`average_precision_score`).
The macro average runs over the tags with at least one positive and one negative track in the split
(the standard in the tagging literature); the micro average pools every (track, tag) pair (what the
original urop2019 project reported). Tags with no positive (or no negative) are listed, not crashed on.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm
from sklearn.metrics import average_precision_score, roc_auc_score

from orpheus.config import DataConfig, load_config
from orpheus.errors import DataFormatError, OrpheusError
from orpheus.files import atomic_dir, atomic_path, check_output, require_dir, write_csv_atomic, write_json_atomic
from orpheus.formats.dataset import read_dataset_info
from orpheus.ownership import FolderKind, file_with
from orpheus.tagging.tagger import TaggingEngine
from orpheus.train.input_pipeline import make_track_windows

log = logging.getLogger(__name__)

PER_TAG_COLUMNS = ("tag", "positives", "negatives", "roc_auc", "pr_auc", "accuracy", "recall")


@dataclass(frozen=True)
class TagScore:
    """Metrics of one tag over a split.

    roc_auc / pr_auc are NaN when undefined (no positive, or no negative for ROC-AUC).
    accuracy / recall are at the report's threshold; recall is NaN without positives.
    """
    tag: str
    positives: int
    negatives: int
    roc_auc: float
    pr_auc: float
    accuracy: float
    recall: float

    @property
    def defined(self) -> bool:
        """True when the tag has both positives and negatives, so it enters the macro average."""
        return self.positives > 0 and self.negatives > 0


def check_arrays(labels: np.ndarray, scores: np.ndarray, tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: labels -> int8 [n_tracks, n_tags] of 0/1, scores -> float64 [n_tracks, n_tags]."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 2 or labels.shape != scores.shape or labels.shape[1] != len(tags):
        raise DataFormatError(f"labels {labels.shape} and scores {scores.shape} must both be "
                              f"[n_tracks, {len(tags)}] (one column per tag)")
    if labels.shape[0] == 0:
        raise DataFormatError("no tracks to evaluate; the split is empty")
    if not np.isin(labels, (0, 1)).all():
        raise DataFormatError("labels must be 0/1 multi-hot")
    if not np.isfinite(scores).all():
        raise DataFormatError("scores contain NaN or infinity; the model diverged")
    return labels.astype(np.int8), scores


def per_tag_scores(labels: np.ndarray, scores: np.ndarray, tags: Sequence[str],
                   threshold: float = 0.5) -> list[TagScore]:
    """ROC-AUC, PR-AUC, accuracy and recall at `threshold` for every tag, in the order of `tags`."""
    labels, scores = check_arrays(labels, scores, tags)
    positives = labels.sum(axis=0)
    negatives = labels.shape[0] - positives
    predicted = scores >= threshold
    accuracy = (predicted == labels.astype(bool)).mean(axis=0)
    hits = (predicted & labels.astype(bool)).sum(axis=0)
    out = []
    for i, tag in enumerate(tags):
        pos, neg = int(positives[i]), int(negatives[i])
        roc = float(roc_auc_score(labels[:, i], scores[:, i])) if pos and neg else math.nan
        pr = float(average_precision_score(labels[:, i], scores[:, i])) if pos else math.nan
        recall = float(hits[i] / pos) if pos else math.nan
        out.append(TagScore(tag, pos, neg, roc, pr, float(accuracy[i]), recall))
    return out


def summary_metrics(labels: np.ndarray, scores: np.ndarray, tags: Sequence[str],
                    threshold: float = 0.5) -> dict[str, Any]:
    """Macro and micro ROC-AUC / PR-AUC over a split, plus the per-tag table.

    Returns a JSON-ready dict: roc_auc_macro, pr_auc_macro (over defined tags), roc_auc_micro,
    pr_auc_micro, n_tracks, n_tags, n_tags_evaluated, threshold, absent_tags (no positive in the
    split), all_positive_tags (no negative), per_tag (list of dicts, NaN written as null).
    """
    per_tag = per_tag_scores(labels, scores, tags, threshold)
    labels, scores = check_arrays(labels, scores, tags)
    defined = [t for t in per_tag if t.defined]
    flat_labels, flat_scores = labels.ravel(), scores.ravel()
    micro_defined = 0 < flat_labels.sum() < flat_labels.size
    return {
        "n_tracks": int(labels.shape[0]),
        "n_tags": len(tags),
        "n_tags_evaluated": len(defined),
        "threshold": threshold,
        "roc_auc_macro": _mean([t.roc_auc for t in defined]),
        "pr_auc_macro": _mean([t.pr_auc for t in defined]),
        "roc_auc_micro": float(roc_auc_score(flat_labels, flat_scores)) if micro_defined else None,
        "pr_auc_micro": float(average_precision_score(flat_labels, flat_scores)) if micro_defined else None,
        "absent_tags": [t.tag for t in per_tag if t.positives == 0],
        "all_positive_tags": [t.tag for t in per_tag if t.negatives == 0],
        "per_tag": [_json_row(t) for t in per_tag],
    }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _json_row(score: TagScore) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in score.__dict__.items()}


def write_metrics_json(path: str | Path, metrics: dict[str, Any]) -> None:
    """Write the `summary_metrics` dict as `metrics.json` atomically."""
    write_json_atomic(path, metrics)


def write_per_tag_csv(path: str | Path, per_tag: Sequence[TagScore]) -> None:
    """Write one row per tag (`PER_TAG_COLUMNS`); undefined values are empty cells."""
    rows = [[("" if isinstance(v, float) and math.isnan(v) else v) for v in
             (t.tag, t.positives, t.negatives, t.roc_auc, t.pr_auc, t.accuracy, t.recall)] for t in per_tag]
    write_csv_atomic(path, PER_TAG_COLUMNS, rows)


def read_per_tag_csv(path: str | Path) -> list[dict[str, str]]:
    """Read a `per_tag.csv` back as a list of string dicts (for tests and tools)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_predictions_npz(path: str | Path, tids: Sequence[str], tags: Sequence[str], labels: np.ndarray,
                          scores: np.ndarray) -> None:
    """Write `predictions.npz`: tids str [n_tracks], tags str [n_tags], labels int8, scores float32."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, tids=np.asarray(list(tids), dtype=str), tags=np.asarray(list(tags), dtype=str),
                 labels=np.asarray(labels, dtype=np.int8), scores=np.asarray(scores, dtype=np.float32))


# ---------------------------------------------------------------- plots

def _figure(width: float, height: float):
    import matplotlib
    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt
    return plt, plt.figure(figsize=(width, height))


def _save(plt, fig, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def plot_roc_pr(path: str | Path, labels: np.ndarray, scores: np.ndarray, tags: Sequence[str]) -> None:
    """ROC (left) and precision-recall (right) curves: one thin line per defined tag, the micro curve bold."""
    from sklearn.metrics import precision_recall_curve, roc_curve
    labels, scores = check_arrays(labels, scores, tags)
    plt, fig = _figure(11, 5)
    roc_ax, pr_ax = fig.subplots(1, 2)
    for i in range(len(tags)):
        if 0 < labels[:, i].sum() < labels.shape[0]:
            fpr, tpr, _ = roc_curve(labels[:, i], scores[:, i])
            roc_ax.plot(fpr, tpr, lw=0.6, alpha=0.4)
            precision, recall, _ = precision_recall_curve(labels[:, i], scores[:, i])
            pr_ax.plot(recall, precision, lw=0.6, alpha=0.4)
    if 0 < labels.sum() < labels.size:
        fpr, tpr, _ = roc_curve(labels.ravel(), scores.ravel())
        roc_ax.plot(fpr, tpr, "k", lw=2, label="micro average")
        precision, recall, _ = precision_recall_curve(labels.ravel(), scores.ravel())
        pr_ax.plot(recall, precision, "k", lw=2, label="micro average")
    roc_ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC per tag")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall per tag")
    roc_ax.legend(loc="lower right")
    pr_ax.legend(loc="upper right")
    _save(plt, fig, path)


def plot_auc_bars(path: str | Path, per_tag: Sequence[TagScore]) -> None:
    """Horizontal bars of ROC-AUC and PR-AUC per defined tag, sorted by ROC-AUC."""
    rows = sorted((t for t in per_tag if t.defined), key=lambda t: t.roc_auc)
    plt, fig = _figure(8, max(3.0, 0.22 * len(rows) + 1))
    ax = fig.subplots()
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [t.roc_auc for t in rows], height=0.4, label="ROC-AUC")
    ax.barh(y + 0.2, [t.pr_auc for t in rows], height=0.4, label="PR-AUC")
    ax.set_yticks(y, [f"{t.tag} ({t.positives})" for t in rows], fontsize=7)
    ax.set(xlim=(0, 1), xlabel="area under curve", title="Per-tag AUC (positives in brackets)")
    ax.legend(loc="lower right")
    _save(plt, fig, path)


def plot_threshold_bars(path: str | Path, per_tag: Sequence[TagScore], threshold: float) -> None:
    """Per-tag accuracy and recall at `threshold` (tags with positives), sorted by recall."""
    rows = sorted((t for t in per_tag if t.positives > 0), key=lambda t: t.recall)
    plt, fig = _figure(8, max(3.0, 0.22 * len(rows) + 1))
    ax = fig.subplots()
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [t.accuracy for t in rows], height=0.4, label="accuracy")
    ax.barh(y + 0.2, [t.recall for t in rows], height=0.4, label="recall")
    ax.set_yticks(y, [t.tag for t in rows], fontsize=7)
    ax.set(xlim=(0, 1), title=f"Per-tag accuracy and recall at threshold {threshold:g}")
    ax.legend(loc="lower right")
    _save(plt, fig, path)


def tag_map_coordinates(kernel: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates of the tag vectors (the columns of the output layer's kernel).

    Args:
        kernel: float [embedding_dim, n_tags], the Dense "tags" layer's kernel.
        method: "pca" (deterministic, via SVD of the centred vectors) or "tsne" (seeded).

    Returns:
        float64 [n_tags, 2].
    """
    vectors = np.asarray(kernel, dtype=np.float64).T
    if vectors.ndim != 2 or vectors.shape[0] < 2:
        raise DataFormatError(f"a tag map needs at least 2 tag vectors, got kernel of shape {np.shape(kernel)}")
    if method == "pca":
        centred = vectors - vectors.mean(axis=0)
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        coords = u[:, :2] * s[:2]
        if coords.shape[1] < 2:
            coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        # fix each axis's sign so the map does not flip between runs
        signs = np.sign(coords[np.abs(coords).argmax(axis=0), [0, 1]])
        return coords * np.where(signs == 0, 1, signs)
    if method == "tsne":
        from sklearn.manifold import TSNE
        perplexity = float(min(30, max(1, vectors.shape[0] - 1) / 3))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vectors)
    raise DataFormatError(f"unknown tag map method {method!r}; use pca or tsne")


def plot_tag_map(path: str | Path, kernel: np.ndarray, tags: Sequence[str], method: str = "pca") -> np.ndarray:
    """Scatter the tags at `tag_map_coordinates`, each labelled; returns the coordinates [n_tags, 2]."""
    if np.shape(kernel)[-1] != len(tags):
        raise DataFormatError(f"tag layer has {np.shape(kernel)[-1]} outputs but the run lists {len(tags)} tags")
    coords = tag_map_coordinates(kernel, method)
    plt, fig = _figure(9, 8)
    ax = fig.subplots()
    ax.scatter(coords[:, 0], coords[:, 1], s=12)
    for (x, y), tag in zip(coords, tags):
        ax.annotate(tag, (x, y), fontsize=7, xytext=(2, 2), textcoords="offset points")
    ax.set(title=f"Tag map ({method.upper()} of the output layer's tag vectors)")
    _save(plt, fig, path)
    return coords


def tag_kernel(model) -> np.ndarray:
    """The Dense "tags" layer's kernel of a Keras model: float32 [embedding_dim, n_tags]."""
    try:
        layer = model.get_layer("tags")
    except ValueError as err:
        raise DataFormatError('the model has no layer named "tags"; it was not built by the model registry') from err
    return np.asarray(layer.kernel)


def write_report(out_dir: str | Path, tids: Sequence[str], tags: Sequence[str], labels: np.ndarray,
                 scores: np.ndarray, *, threshold: float = 0.5, kernel: np.ndarray | None = None,
                 map_method: str = "pca") -> dict[str, Any]:
    """Write every report file into `out_dir` and return the metrics dict (also in metrics.json)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = summary_metrics(labels, scores, tags, threshold)
    per_tag = per_tag_scores(labels, scores, tags, threshold)
    write_per_tag_csv(out_dir / "per_tag.csv", per_tag)
    write_predictions_npz(out_dir / "predictions.npz", tids, tags, labels, scores)
    plot_roc_pr(out_dir / "roc_pr.png", labels, scores, tags)
    plot_auc_bars(out_dir / "auc_per_tag.png", per_tag)
    plot_threshold_bars(out_dir / "threshold_per_tag.png", per_tag, threshold)
    if kernel is not None:
        plot_tag_map(out_dir / "tag_map.png", kernel, tags, map_method)
    write_metrics_json(out_dir / "metrics.json", metrics)  # last: its presence means the report is whole
    return metrics


# ---------------------------------------------------------------- orpheus test: a run on a shard split
def run_data_config(run_dir: Path):
    """The run's `data` settings from its config.json (the defaults for converted pretrained models): its
    `merge_tags` and `exclude_tids` apply to what `test` scores."""
    path = run_dir / "config.json"
    return load_config(path).data if path.is_file() else DataConfig()


REPORT = FolderKind("evaluation report", legacy=file_with("metrics.json", "per_tag.csv"))
TEST_FAST_BATCH_SIZE = 4  # windows per call of fast's OpenVINO model in `test`, beside TensorFlow (see run_test)


def run_test(*, run_dir: str, tfrecords_dir: str, split: str = "test", out: str | None = None,
             threshold: float = 0.5, map_method: str = "pca", batch_size: int | None = None, overwrite: bool = False,
             quiet: bool = False, precision: str = "exact") -> dict:
    """Evaluate every window of every track of `split`; write the report; return the metrics dict."""
    run_path = require_dir(run_dir, "--run-dir run")
    shard_dir = require_dir(tfrecords_dir, "--tfrecords-dir shard")
    out_dir = Path(out) if out is not None else run_path / f"report-{split}"
    rule = dict(overwrite=overwrite, inputs=[(run_path, "run directory"), (shard_dir, "shard folder")], flag="--out")
    check_output(out_dir, REPORT, **rule)
    dataset_info = read_dataset_info(shard_dir)
    # The shards are read with TensorFlow (tf.data), so it is loaded here anyway (0.70 GB): exact runs the Keras
    # model itself, and fast's OpenVINO model gets smaller batches, which keeps the peak under 1 GB
    # (measured with MSD_musicnn on 200 tracks: exact 0.84 GB; fast 0.90 GB at 4 windows, 1.08 GB at 16).
    tagger = TaggingEngine(run_path, batch_size=batch_size or (TEST_FAST_BATCH_SIZE if precision == "fast" else None),
                    precision=precision, engine="tensorflow" if precision == "exact" else "auto", free_memory=True)
    batch_size = tagger.batch_size
    data = run_data_config(run_path)
    tracks = make_track_windows(shard_dir, split, tagger.info, merge_tags=data.merge_tags,
                                exclude_tids=data.exclude_tids)
    tids, labels, scores = [], [], []
    pending: list[np.ndarray] = []  # windows of tracks not yet run, batched across tracks

    def flush() -> None:
        if pending:
            probs, _ = tagger.predict_windows(np.concatenate(pending), normalised=True)
            bounds = np.cumsum([w.shape[0] for w in pending])[:-1]
            scores.extend(part.mean(axis=0) for part in np.split(probs, bounds))
            pending.clear()

    total = None if data.exclude_tids else dataset_info.counts.get(split)   # excluded tracks: counted as they come
    for tid, windows, track_labels in tqdm(tracks.as_numpy_iterator(), total=total, desc=f"evaluating {split}",
                                           unit="track", disable=quiet, dynamic_ncols=True):
        tids.append(tid.decode("utf-8"))
        labels.append(track_labels.astype(np.int8))
        pending.append(windows)
        if sum(w.shape[0] for w in pending) >= batch_size:
            flush()
    flush()
    if not tids:
        raise OrpheusError(f"{shard_dir}: no {split} tracks; check --split or rerun preprocessing")
    with atomic_dir(out_dir, REPORT, **rule) as tmp:
        metrics = write_report(tmp, tids, tagger.tags, np.stack(labels), np.stack(scores), threshold=threshold,
                               kernel=tag_kernel(tagger.model), map_method=map_method)
    log.info("%s: per-track ROC-AUC macro %.4f micro %.4f, PR-AUC (average precision) macro %.4f micro %.4f "
             "over %d tracks -> %s", split,
             metrics["roc_auc_macro"] or float("nan"), metrics["roc_auc_micro"] or float("nan"),
             metrics["pr_auc_macro"] or float("nan"), metrics["pr_auc_micro"] or float("nan"), len(tids), out_dir)
    return metrics


def format_summary(metrics: dict) -> str:
    """A short human-readable summary of a metrics dict."""
    def num(value):
        return "n/a" if value is None else f"{value:.4f}"
    lines = [f"tracks {metrics['n_tracks']}, tags evaluated {metrics['n_tags_evaluated']}/{metrics['n_tags']}",
             f"ROC-AUC macro {num(metrics['roc_auc_macro'])}  micro {num(metrics['roc_auc_micro'])}",
             f"PR-AUC  macro {num(metrics['pr_auc_macro'])}  micro {num(metrics['pr_auc_micro'])}  "
             "(per track over every window; PR-AUC is average precision)"]
    if metrics["absent_tags"]:
        lines.append(f"tags with no positive in the split (left out of the macro average): "
                     f"{', '.join(metrics['absent_tags'])}")
    return "\n".join(lines)
