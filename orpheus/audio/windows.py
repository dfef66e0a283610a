"""Cutting a track's features into model windows, and normalising them, identically everywhere.

Evaluation (`test_model.py test`), tagging (`test_model.py predict`) and the input pipeline share
these so that a track is seen the same way in every stage. `normalise_windows` is TensorFlow (it runs
inside tf.data); `normalise_windows_np` is the same arithmetic in NumPy for tagging without TensorFlow
(`--precision fast`), equal to it within float32 rounding (a test checks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from orpheus.errors import DataFormatError
from orpheus.formats.rundir import RunInfo

if TYPE_CHECKING:
    import tensorflow as tf

EPSILON = 1e-6


def window_starts(n_frames: int, window_frames: int, hop_frames: int | None = None) -> np.ndarray:
    """Start indices of consecutive windows covering the whole track.

    Windows start every `hop_frames` (default: `window_frames`, no overlap); the last window is
    aligned to the end of the track so no frame is left out. A track shorter than one window gets
    one window at 0 (the caller pads it).

    Returns:
        int64 [n_windows], sorted, unique.
    """
    if window_frames <= 0:
        raise DataFormatError(f"window length must be positive, got {window_frames} frames")
    hop_frames = hop_frames or window_frames
    if hop_frames <= 0:
        raise DataFormatError(f"window hop must be positive, got {hop_frames} frames")
    last = max(n_frames - window_frames, 0)
    starts = np.arange(0, last + 1, hop_frames, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


def cut_windows(features: np.ndarray, window_frames: int, hop_frames: int | None = None) -> np.ndarray:
    """Stack the windows of `window_starts` from features [n_frames, ...] into [n_windows, window_frames, ...].

    A track shorter than one window is zero-padded at the end.
    """
    n_frames = features.shape[0]
    if n_frames < window_frames:
        pad = [(0, window_frames - n_frames)] + [(0, 0)] * (features.ndim - 1)
        features = np.pad(features, pad)
    starts = window_starts(features.shape[0], window_frames, hop_frames)
    index = starts[:, None] + np.arange(window_frames)[None, :]
    return features[index]


def normalise_windows(windows: tf.Tensor, info: RunInfo) -> tf.Tensor:
    """Normalise float32 [n_windows, window_frames(, n_bins)] as the model was trained.

    "per_example": each window standardised to zero mean, unit variance over all its values;
    "dataset": per-bin `feature_mean`/`feature_std` from the training split; "none": unchanged.
    """
    import tensorflow as tf
    windows = tf.convert_to_tensor(windows, tf.float32)
    if info.normalise == "none":
        return windows
    if info.normalise == "dataset":
        mean = tf.constant(info.feature_mean, tf.float32)
        std = tf.constant(info.feature_std, tf.float32)
        return (windows - mean) / (std + EPSILON)
    axes = list(range(1, len(windows.shape)))
    mean, variance = tf.nn.moments(windows, axes=axes, keepdims=True)
    return (windows - mean) / (tf.sqrt(variance) + EPSILON)


def normalise_windows_np(windows: np.ndarray, info: RunInfo) -> np.ndarray:
    """`normalise_windows` in NumPy: float32 [n_windows, window_frames(, n_bins)] -> the same shape."""
    windows = np.asarray(windows, np.float32)
    if info.normalise == "none":
        return windows
    if info.normalise == "dataset":
        mean = np.asarray(info.feature_mean, np.float32)
        std = np.asarray(info.feature_std, np.float32)
        return (windows - mean) / (std + np.float32(EPSILON))
    axes = tuple(range(1, windows.ndim))
    mean = windows.mean(axis=axes, keepdims=True)
    std = np.sqrt(windows.var(axis=axes, keepdims=True))
    return ((windows - mean) / (std + np.float32(EPSILON))).astype(np.float32)
