"""Voices: formant synthesis of sung notes and rap syllables; float32 [n_samples], mono."""

from __future__ import annotations

import numpy as np
import scipy.signal

from msd.miniature.synth.signals import _cached, _envelope, _filter, _noise, _place, _saw, _time
from msd.miniature.synth.song import (
    FORMANT_BANDWIDTHS_HZ,
    FORMANT_LEVELS,
    STEPS_PER_BAR,
    VOWEL_FORMANTS_HZ,
    Song,
    midi_hz,
)


def _formant_filter(source: np.ndarray, sample_rate: int, vowel: int, formant_scale: float) -> np.ndarray:
    """Pass a glottal source through three parallel band-pass resonators at the vowel's formants."""
    out = np.zeros_like(source)
    for freq, level, bandwidth in zip(VOWEL_FORMANTS_HZ[vowel] * formant_scale, FORMANT_LEVELS,
                                      FORMANT_BANDWIDTHS_HZ):
        if freq >= 0.45 * sample_rate:
            continue
        w0 = 2 * np.pi * freq / sample_rate
        alpha = np.sin(w0) * np.sinh(np.log(2) / 2 * (bandwidth / freq) * w0 / np.sin(w0))
        b = np.array([alpha, 0.0, -alpha])
        a = np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha])
        out += level * scipy.signal.lfilter(b, a, source).astype(np.float32)
    return out


def _sung_note(song: Song, pitch: int, length_s: float, vowel: int, formant_scale: float) -> np.ndarray:
    n = int((length_s + 0.08) * song.sample_rate)
    t = _time(n, song.sample_rate)
    f0 = float(midi_hz(pitch))
    # Vibrato grows in after the onset, as singers do.
    depth = 0.012 * f0 * np.clip((t - 0.15) / 0.3, 0, 1)
    freq = f0 * (1 - 0.03 * np.exp(-t / 0.05)) + depth * np.sin(2 * np.pi * 5.5 * t)
    source = _saw(np.cumsum(freq, dtype=np.float64) / song.sample_rate) + 0.05 * _noise(song.rng, n)
    voice = _formant_filter(source, song.sample_rate, vowel, formant_scale)
    return voice * _envelope(n, song.sample_rate, 0.04, 10.0, 1.0, 0.08)


def render_voice(song: Song, *, low_pitch: int, high_pitch: int, formant_scale: float) -> np.ndarray:
    """A sung melody in phrases of two bars (a beat of rest between), legato quarter and 8th notes."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    candidates = [song.degree_pitch(d, o) for o in range(1, 7) for d in range(7)]
    candidates = [p for p in candidates if low_pitch <= p <= high_pitch]
    index = len(candidates) // 2
    for bar in range(song.n_bars):
        step = 0
        while step < STEPS_PER_BAR - (2 if bar % 2 else 0):
            length = int(rng.choice([2, 4, 4, 6, 8]))
            index = int(np.clip(index + rng.choice([-2, -1, 0, 1, 1, 2]), 0, len(candidates) - 1))
            pitch, vowel = candidates[index], int(rng.integers(0, len(VOWEL_FORMANTS_HZ)))
            length_s = length * song.step_s
            sound = _cached(song, ("sung", pitch, vowel, length), lambda: _sung_note(
                song, pitch, length_s, vowel, formant_scale))
            _place(track, sound, song.step_time_s(bar, step), song.sample_rate, rng.uniform(0.8, 1.0))
            step += length
    return 3.0 * track


def _rap_syllable(song: Song, pitch: float, length_s: float, vowel: int, formant_scale: float,
                  consonant: bool) -> np.ndarray:
    n = int(length_s * song.sample_rate)
    t = _time(n, song.sample_rate)
    f0 = float(midi_hz(pitch))
    freq = f0 * (1.15 - 0.25 * t / length_s)  # spoken intonation falls through the syllable
    source = _saw(np.cumsum(freq, dtype=np.float64) / song.sample_rate) + 0.1 * _noise(song.rng, n)
    voice = _formant_filter(source, song.sample_rate, vowel, formant_scale)
    voice *= _envelope(n, song.sample_rate, 0.01, length_s / 2, 0.3, 0.02)
    if consonant:  # a fricative or plosive burst ("s", "t", "k") at the start
        m = min(n, int(0.04 * song.sample_rate))
        voice[:m] += 0.8 * _filter(_noise(song.rng, m), song.sample_rate, "highpass", 3500.0) * \
            np.exp(-_time(m, song.sample_rate) / 0.015).astype(np.float32)
    return voice


def render_rap(song: Song, *, base_pitch: int, formant_scale: float) -> np.ndarray:
    """Rap: dense, rhythmic, short spoken-like syllables on the 16th grid, bar after bar."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        pattern = rng.random(STEPS_PER_BAR) < 0.75
        pattern[12 + int(rng.integers(0, 4)):] &= bar % 2 == 0  # breathe at the end of every other bar
        for step in np.flatnonzero(pattern):
            length = 1 if rng.random() < 0.7 else 2
            pitch = base_pitch + int(rng.choice([-2, 0, 0, 2, 3]))
            vowel = int(rng.integers(0, len(VOWEL_FORMANTS_HZ)))
            consonant = bool(rng.random() < 0.5)
            sound = _cached(song, ("rap", pitch, vowel, length, consonant), lambda: _rap_syllable(
                song, pitch, 0.9 * length * song.step_s, vowel, formant_scale, consonant))
            _place(track, sound, song.step_time_s(bar, int(step)), song.sample_rate, rng.uniform(0.75, 1.0))
    return 3.0 * track
