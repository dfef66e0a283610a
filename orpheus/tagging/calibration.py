"""Music made in code for calibrating and checking `--precision fast`'s arithmetic (no files, no downloads).

`orpheus.tagging.fast_arithmetic` quantizes a model's front end (`orpheus.tagging.quantize`) with the statistics of
these windows and checks every candidate arithmetic against float32 on other seeds of them. What matters here is that the
windows span what music puts into a spectrogram model, not that they sound like a genre: harmonic
chords plucked (decaying) or held (pads), a bass line, a drum kit (swept-sine kick, noise snare,
high-passed hi-hats), sometimes a sung vibrato voice with formants, in a reverberant room, saturated
like a mastered record, at tempi from 70 to 170 bpm and peaks from -24 to 0 dBFS, so that loud and
quiet, dense and sparse, tonal and noisy inputs are all present: the log-mel values of MSD_musicnn's
input have the same spread as 50 real clips' (median 1.7 against 1.9, 99.9th percentile 5.5 against
5.4). Every clip is a pure function of its seed.

    windows = calibration_windows(run_info, seeds=range(8))   # float32 [n, window_frames, n_bins]
"""

from __future__ import annotations

import functools
from typing import Iterable

import numpy as np

from orpheus.audio.features import compute_features
from orpheus.audio.windows import cut_windows, normalise_windows_np
from orpheus.formats.rundir import RunInfo

CLIP_S = 10.0  # seconds per generated clip: three 3 s windows and one aligned to the end
TABLE_SIZE = 4096  # samples per period of a note's wavetable


def _note(freq: float, n: int, rate: int, rng: np.random.Generator, *, plucked: bool) -> np.ndarray:
    """A harmonic tone of `n` samples: 1/k partials up to 6 kHz, a decaying or swelling envelope."""
    t = np.arange(n) / rate
    brightness = rng.uniform(0.6, 1.6)
    period = np.arange(TABLE_SIZE) / TABLE_SIZE  # one period of the waveform, read at the note's frequency
    partials = np.arange(1, int(min(6000, rate / 2 - 1) // freq) + 1)
    table = (np.sin(2 * np.pi * np.outer(partials, period) + rng.uniform(0, 2 * np.pi, (partials.size, 1)))
             / partials[:, None] ** brightness).sum(axis=0)
    tone = table[(freq * t * TABLE_SIZE).astype(np.int64) % TABLE_SIZE]
    if plucked:
        envelope = np.exp(-t * rng.uniform(2, 8))
    else:  # a 0.3 s swell and a 0.2 s release
        envelope = np.minimum(1, t / 0.3) * np.minimum(1, (t[-1] - t) / 0.2 + 0.05)
    return tone * envelope


def _drum(kind: str, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    if kind == "kick":  # a sine swept from about 150 to 45 Hz
        return np.sin(2 * np.pi * (45 * t + 100 * (1 - np.exp(-t * 30)) / 30)) * np.exp(-t * 12)
    noise = rng.normal(size=n)
    if kind == "snare":
        return (0.6 * noise + 0.5 * np.sin(2 * np.pi * 190 * t)) * np.exp(-t * 25)
    return np.diff(noise, prepend=0.0) * 0.4 * np.exp(-t * 60)  # hat: first difference = high-passed noise


def _voice(freq: float, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A sung vowel: a vibrato pulse train through three formant resonances."""
    from scipy.signal import lfilter
    t = np.arange(n) / rate
    phase = 2 * np.pi * np.cumsum(freq * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * t))) / rate
    source = sum(np.sin(k * phase) for k in range(1, 30) if k * freq < rate / 2)
    out = np.zeros(n)
    for formant, gain in zip(rng.choice([[700, 1200, 2600], [300, 2300, 3000], [500, 900, 2500]]), (1, 0.5, 0.25)):
        r = np.exp(-np.pi * 100 / rate)
        out += gain * lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / rate), r * r], source)
    return out * np.minimum(1, t / 0.1) * np.minimum(1, (t[-1] - t) / 0.1 + 0.05)


def calibration_audio(seed: int, sample_rate: int, duration_s: float = CLIP_S) -> np.ndarray:
    """One clip of music-like audio, a pure function of `seed`.

    Returns:
        float32 [round(duration_s * sample_rate)], mono, peak in [-30, 0] dBFS.
    """
    rng = np.random.default_rng([seed, 24])
    n = int(round(duration_s * sample_rate))
    beat = int(sample_rate * 60 / rng.uniform(70, 170))
    out = np.zeros(n + 5 * beat)  # room for the notes and drums of the last bar that ring past the end
    root = 55 * 2 ** (rng.integers(0, 24) / 12)
    plucked = bool(rng.integers(2))
    chords = ([0, 4, 7], [0, 3, 7], [0, 4, 7, 11], [0, 3, 7, 10], [0, 5, 7])
    for bar, start in enumerate(range(0, n, 4 * beat)):  # chords and bass
        degree = rng.choice([0, 5, 7, 9, 3])
        for interval in chords[rng.integers(len(chords))]:
            freq = root * 4 * 2 ** ((degree + interval) / 12)
            out[start:start + 4 * beat] += 0.25 * _note(freq, 4 * beat, sample_rate, rng, plucked=plucked)
        for step in range(4):
            freq = root * 2 ** ((degree + rng.choice([0, 7, 12])) / 12)
            at = start + step * beat
            out[at:at + beat] += 0.4 * _note(freq, beat, sample_rate, rng, plucked=True)
    if rng.random() < 0.75:  # drums
        kit = {"kick": (0, 2), "snare": (1, 3), "hat": (0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5)}
        for start in range(0, n, 4 * beat):
            for kind, beats in kit.items():
                for b in beats:
                    at = start + int(b * beat)
                    out[at:at + beat] += 0.5 * _drum(kind, beat, sample_rate, rng)
    if rng.random() < 0.5:  # a voice on a few notes of the scale
        for start in range(0, n, 2 * beat):
            if rng.random() < 0.7:
                freq = root * 4 * 2 ** (rng.choice([0, 2, 4, 5, 7, 9]) / 12) * rng.choice([0.5, 1])
                out[start:start + 2 * beat] += 0.3 * _voice(freq, 2 * beat, sample_rate, rng)
    from scipy.signal import fftconvolve
    tail = rng.normal(size=int(sample_rate * rng.uniform(0.2, 1.5)))  # a room: decaying noise as reverb
    tail *= np.exp(-7 * np.arange(tail.size) / tail.size) * 8 / np.abs(tail).sum()
    out = out[:n] + rng.uniform(0.05, 0.3) * fftconvolve(out[:n], tail)[:n]
    out /= max(np.abs(out).max(), 1e-9)
    out = np.tanh(out * rng.uniform(1, 5)) + rng.normal(size=n) * 10 ** rng.uniform(-4, -2.5)  # mastered loud
    peak = 10 ** (rng.uniform(-24, 0) / 20)
    return (out * peak / np.abs(out).max()).astype(np.float32)


@functools.lru_cache(maxsize=4)  # a process that chooses for two models of one kind generates the music once
def calibration_windows(info: RunInfo, seeds: Iterable[int], window_frames: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The model inputs of the clips of `seeds` (a hashable range or tuple), cut (`window_frames`, default
    the run's) and normalised as tagging does; read-only arrays.

    Returns:
        (windows float32 [n_windows, window_frames(, n_bins)], clip int64 [n_windows]: which seed's clip).
    """
    cuts, owners = [], []
    for i, seed in enumerate(seeds):
        features = compute_features(calibration_audio(seed, info.features.sample_rate), info.features)
        cut = normalise_windows_np(cut_windows(features, window_frames or info.window_frames), info)
        cuts.append(cut)
        owners.append(np.full(cut.shape[0], i))
    windows, clips = np.concatenate(cuts).astype(np.float32), np.concatenate(owners)
    windows.flags.writeable = clips.flags.writeable = False
    return windows, clips
