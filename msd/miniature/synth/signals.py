"""Signal helpers of the synthesiser (all vectorised): oscillators, envelopes, filters, noise, placement."""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.signal

from msd.miniature.synth.song import Song


def _time(n_samples: int, sample_rate: int) -> np.ndarray:
    """Seconds since the note's onset, float32 [n_samples] (notes last seconds, so float32 phases stay exact)."""
    return np.arange(n_samples, dtype=np.float32) / np.float32(sample_rate)


def _wrap(cycles: np.ndarray) -> np.ndarray:
    """Phase in cycles (any float dtype) wrapped to [0, 1), float32 (x - floor(x): much faster than np.mod)."""
    return (cycles - np.floor(cycles)).astype(np.float32, copy=False)


def _saw(cycles: np.ndarray) -> np.ndarray:
    """Naive sawtooth in [-1, 1] of a phase in cycles; float32 [n]."""
    return 2.0 * _wrap(cycles) - 1.0


def _square(cycles: np.ndarray) -> np.ndarray:
    return np.where(_wrap(cycles) < 0.5, np.float32(1.0), np.float32(-1.0))


def _sine(cycles: np.ndarray) -> np.ndarray:
    """Sine of a phase in cycles, float32 [n]."""
    return np.sin(np.float32(2 * np.pi) * _wrap(cycles))


def _envelope(n_samples: int, sample_rate: int, attack_s: float, decay_s: float, sustain: float,
              release_s: float) -> np.ndarray:
    """Attack (linear), exponential decay towards `sustain`, linear release over the last `release_s`.

    Returns float32 [n_samples] in [0, 1].
    """
    t = _time(n_samples, sample_rate)
    attack = np.minimum(t / max(attack_s, 1e-4), 1.0)
    decay = sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack_s, 0.0) / max(decay_s, 1e-4))
    release = np.clip((n_samples / sample_rate - t) / max(release_s, 1e-4), 0.0, 1.0)
    return attack * decay * release


def _filter(audio: np.ndarray, sample_rate: int, kind: str, cutoff_hz: float | tuple[float, float],
            order: int = 2) -> np.ndarray:
    """Butterworth low/high/band-pass (second-order sections); cutoffs are clipped below Nyquist."""
    nyquist = sample_rate / 2
    cut = np.clip(np.asarray(cutoff_hz, dtype=np.float64), 10.0, 0.95 * nyquist)
    sos = scipy.signal.butter(order, cut, btype=kind, fs=sample_rate, output="sos")
    return scipy.signal.sosfilt(sos, audio).astype(np.float32)


def _noise(rng: np.random.Generator, n_samples: int) -> np.ndarray:
    return rng.standard_normal(n_samples, dtype=np.float32)


def _place(track: np.ndarray, sound: np.ndarray, onset_s: float, sample_rate: int, gain: float) -> None:
    """Add `sound` scaled by `gain` into `track` at `onset_s` (cut at the end of the track)."""
    start = int(round(onset_s * sample_rate))
    if start >= track.shape[0] or start + sound.shape[0] <= 0:
        return
    skip = max(0, -start)
    start = max(0, start)
    stop = min(track.shape[0], start + sound.shape[0] - skip)
    track[start:stop] += gain * sound[skip:skip + stop - start]


def _cached(song: Song, key: tuple, make: Callable[[], np.ndarray]) -> np.ndarray:
    """Render a note once per distinct key; repeated notes reuse it (as a sampler would)."""
    sound = song.cache.get(key)
    if sound is None:
        sound = song.cache[key] = make()
    return sound


def _harmonics_limit(f0_hz: float, sample_rate: int, wanted: int) -> int:
    return max(1, min(wanted, int(0.45 * sample_rate / max(f0_hz, 1.0))))
