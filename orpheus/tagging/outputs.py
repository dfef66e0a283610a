"""Tagging's output side: ranked tags, JSON records and taggram plots of `orpheus.tagging.tagger.TrackTags`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from orpheus.files import atomic_path
from orpheus.ownership import FileKind, has_software_field, software_name

TAGGRAM = FileKind("taggram", has_software_field)   # a PNG whose "Software" field names Orpheus


def ranked_tags(tags: Sequence[str], scores: np.ndarray, *, threshold: float | None = None,
                top: int | None = None) -> list[tuple[str, float]]:
    """(tag, probability) sorted by probability (descending, ties by tag), filtered by threshold or top-k."""
    order = sorted(range(len(tags)), key=lambda i: (-float(scores[i]), tags[i]))
    pairs = [(tags[i], float(scores[i])) for i in order]
    if threshold is not None:
        pairs = [p for p in pairs if p[1] >= threshold]
    if top is not None:
        pairs = pairs[:top]
    return pairs


def json_record(result, tags: Sequence[str], *, threshold: float | None = None, top: int | None = None,
                taggram: bool = False) -> dict[str, Any]:
    """`{"file": ..., "tags": {tag: probability}, "warnings": [...]}` (all tags unless filtered),
    + "taggram"; `{"file": ..., "error": ..., "warnings": []}` for a file that could not be tagged."""
    warnings = list(getattr(result, "warnings", None) or [])
    if result.error is not None:
        return {"file": result.file, "error": result.error, "warnings": warnings}
    record: dict[str, Any] = {"file": result.file,
                              "tags": dict(ranked_tags(tags, result.scores, threshold=threshold, top=top)),
                              "warnings": warnings}
    if taggram:
        record["taggram"] = {"tags": list(tags), "window_start_s": [round(float(s), 4) for s in result.window_start_s],
                             "probabilities": np.round(result.window_scores, 6).tolist()}
    return record


def plot_taggram(path: str | Path, result, tags: Sequence[str], window_s: float) -> None:
    """Heat map of tag probabilities (rows, model order) over time (columns, one per window), as a PNG."""
    import matplotlib
    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    probs = result.window_scores
    fig = plt.figure(figsize=(max(6.0, 0.25 * probs.shape[0] + 3), max(4.0, 0.18 * len(tags) + 1.5)))
    ax = fig.subplots()
    ends = result.window_start_s + window_s
    image = ax.imshow(probs.T, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0,
                      vmax=max(float(probs.max()), 1e-6), origin="upper")
    ax.set_yticks(np.arange(len(tags)), tags, fontsize=6)
    step = max(1, probs.shape[0] // 12)
    ticks = np.arange(0, probs.shape[0], step)
    ax.set_xticks(ticks, [f"{result.window_start_s[i]:.1f}" for i in ticks], fontsize=7)
    ax.set(xlabel=f"window start (s); last window ends at {ends[-1]:.1f} s", title=f"Taggram: {Path(result.file).name}")
    fig.colorbar(image, ax=ax, label="probability")
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=100, metadata={"Software": software_name()})   # the mark: ours
    plt.close(fig)
