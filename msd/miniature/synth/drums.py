"""Drums: one sound per drum per track, placed on a 16th grid (`DRUM_STYLES` combine by maximum)."""

from __future__ import annotations

import numpy as np

from msd.miniature.synth.signals import _filter, _noise, _place, _sine, _square, _time
from msd.miniature.synth.song import STEPS_PER_BAR, Song


def _kick(song: Song, rng: np.random.Generator, *, decay_s: float = 0.28, start_hz: float = 160.0,
          end_hz: float = 48.0, length_s: float = 0.45) -> np.ndarray:
    n = int(length_s * song.sample_rate)
    t = _time(n, song.sample_rate)
    freq = end_hz + (start_hz - end_hz) * np.exp(-t / 0.03)
    body = _sine(np.cumsum(freq, dtype=np.float64) / song.sample_rate) * np.exp(-t / decay_s).astype(np.float32)
    click = _filter(_noise(rng, n), song.sample_rate, "highpass", 2000.0) * np.exp(-t / 0.004).astype(np.float32)
    return np.tanh(1.5 * body + 0.4 * click).astype(np.float32)


def _snare(song: Song, rng: np.random.Generator, *, tone_hz: float = 190.0, decay_s: float = 0.13,
           length_s: float = 0.35) -> np.ndarray:
    n = int(length_s * song.sample_rate)
    t = _time(n, song.sample_rate)
    tone = _sine(tone_hz * t) * np.exp(-t / 0.06).astype(np.float32)
    rattle = _filter(_noise(rng, n), song.sample_rate, "bandpass", (1200.0, 9000.0))
    rattle *= np.exp(-t / decay_s).astype(np.float32)
    return 0.6 * tone + 1.1 * rattle


def _gated_snare(song: Song, rng: np.random.Generator) -> np.ndarray:
    """The 80s gated-reverb snare: a dense noisy tail at full level, cut dead after ~0.28 s."""
    n = int(0.3 * song.sample_rate)
    t = _time(n, song.sample_rate)
    hit = _snare(song, rng, length_s=0.3)
    tail = _filter(_noise(rng, n), song.sample_rate, "bandpass", (600.0, 7000.0))
    gate = np.where(t < 0.27, 1.0, np.maximum(0.0, 1 - (t - 0.27) / 0.03)).astype(np.float32)
    return (hit + 0.7 * tail * np.minimum(1.0, t / 0.01).astype(np.float32)) * gate


def _hat(song: Song, rng: np.random.Generator, *, decay_s: float = 0.035, length_s: float = 0.12) -> np.ndarray:
    n = int(length_s * song.sample_rate)
    t = _time(n, song.sample_rate)
    metal = sum(_square(f * t) for f in (3140.0, 4170.0, 5210.0, 6530.0)) / 4
    sound = _filter(0.6 * _noise(rng, n) + metal, song.sample_rate, "highpass", 6500.0)
    return sound * np.exp(-t / decay_s).astype(np.float32)


def _ride(song: Song, rng: np.random.Generator) -> np.ndarray:
    """Ride cymbal: inharmonic metallic partials with a bell ping and a long shimmering decay."""
    n = int(1.0 * song.sample_rate)
    t = _time(n, song.sample_rate)
    partials = (np.array([2.51, 3.73, 4.87, 6.11, 7.43]) * rng.uniform(430, 520))[:, None]
    ping = np.sin(2 * np.pi * partials * t).sum(axis=0).astype(np.float32) * np.exp(-t / 0.25).astype(np.float32)
    wash = _filter(_noise(rng, n), song.sample_rate, "highpass", 5000.0) * np.exp(-t / 0.45).astype(np.float32)
    return 0.15 * ping + 0.9 * wash


def _crash(song: Song, rng: np.random.Generator) -> np.ndarray:
    n = int(1.6 * song.sample_rate)
    t = _time(n, song.sample_rate)
    return _filter(_noise(rng, n), song.sample_rate, "highpass", 3500.0) * np.exp(-t / 0.6).astype(np.float32)


def _clap(song: Song, rng: np.random.Generator) -> np.ndarray:
    n = int(0.3 * song.sample_rate)
    t = _time(n, song.sample_rate)
    bursts = sum(np.exp(-np.maximum(t - d, 0) / 0.006) * (t >= d) for d in (0.0, 0.011, 0.022))
    env = (bursts + 0.6 * np.exp(-np.maximum(t - 0.03, 0) / 0.09) * (t >= 0.03)).astype(np.float32)
    return 1.4 * _filter(_noise(rng, n), song.sample_rate, "bandpass", (900.0, 2600.0)) * env


def _pattern(*steps: int, vel: float = 1.0) -> np.ndarray:
    pattern = np.zeros(STEPS_PER_BAR, dtype=np.float32)
    pattern[list(steps)] = vel
    return pattern


EIGHTHS = tuple(range(0, 16, 2))
SIXTEENTHS = tuple(range(16))
QUARTERS = (0, 4, 8, 12)
OFFBEATS = (2, 6, 10, 14)

# Drum styles: drum -> velocity per 16th step (0 = no hit). Styles combine by element-wise maximum.
DRUM_STYLES: dict[str, dict[str, np.ndarray]] = {
    "rock": {"kick": _pattern(0, 8, 10), "snare": _pattern(4, 12), "hat": _pattern(*EIGHTHS, vel=0.7)},
    "metal": {"kick": _pattern(*SIXTEENTHS, vel=0.85), "snare": _pattern(4, 12), "hat": _pattern(*QUARTERS, vel=0.5),
              "crash": _pattern(0, vel=0.6)},
    "four_floor": {"kick": _pattern(*QUARTERS), "open_hat": _pattern(*OFFBEATS, vel=0.6),
                   "hat": _pattern(*SIXTEENTHS, vel=0.25)},
    "dance": {"kick": _pattern(*QUARTERS), "clap": _pattern(4, 12), "hat": _pattern(*SIXTEENTHS, vel=0.5),
              "open_hat": _pattern(*OFFBEATS, vel=0.6)},
    "jazz": {"ride": _pattern(0, 4, 6, 8, 12, 14, vel=0.75), "pedal_hat": _pattern(4, 12, vel=0.5),
             "kick": _pattern(*QUARTERS, vel=0.15)},
    "hip_hop": {"kick": _pattern(0, 7, 10), "snare": _pattern(4, 12), "hat": _pattern(*EIGHTHS, vel=0.3)},
    "pop": {"kick": _pattern(0, 6, 8), "snare": _pattern(4, 12), "hat": _pattern(*SIXTEENTHS, vel=0.45)},
    "breakbeat": {"kick": _pattern(0, 2, 10, 11), "snare": _pattern(4, 12) + _pattern(7, 9, 15, vel=0.45),
                  "hat": _pattern(*EIGHTHS, vel=0.6)},
}
DRUM_LEVELS = {"kick": 1.0, "snare": 0.8, "hat": 0.3, "open_hat": 0.3, "ride": 0.45, "pedal_hat": 0.25,
               "crash": 0.35, "clap": 0.7, "gated_snare": 0.9}


def render_drums(song: Song) -> np.ndarray:
    """A drum kit playing the union of `song.drum_styles`; returns float32 [n_samples], mono.

    Genre styles set the kick: hip hop gets a long boomy kick, metal a short tight one. With
    "gated_snare" among the styles the snare is the 80s gated-reverb one (and plays 2 and 4 at least).
    """
    rng = song.rng
    styles = [s for s in song.drum_styles if s != "gated_snare"]
    gated_snare = "gated_snare" in song.drum_styles
    patterns: dict[str, np.ndarray] = {}
    for style in styles:
        for drum, pattern in DRUM_STYLES[style].items():
            patterns[drum] = np.maximum(patterns.get(drum, 0), pattern)
    if gated_snare:
        patterns["gated_snare"] = np.maximum(patterns.pop("snare", 0), _pattern(4, 12))
    kick_kwargs = {"decay_s": 0.55, "start_hz": 120.0, "end_hz": 42.0, "length_s": 0.8} if "hip_hop" in styles \
        else {"decay_s": 0.12, "start_hz": 200.0, "end_hz": 60.0, "length_s": 0.25} if "metal" in styles else {}
    makers = {"kick": lambda: _kick(song, rng, **kick_kwargs), "snare": lambda: _snare(song, rng),
              "hat": lambda: _hat(song, rng), "open_hat": lambda: _hat(song, rng, decay_s=0.18, length_s=0.4),
              "pedal_hat": lambda: _hat(song, rng, decay_s=0.02), "ride": lambda: _ride(song, rng),
              "crash": lambda: _crash(song, rng), "clap": lambda: _clap(song, rng),
              "gated_snare": lambda: _gated_snare(song, rng)}
    track = np.zeros(song.n_samples, dtype=np.float32)
    for drum in sorted(patterns):
        sound = makers[drum]() * DRUM_LEVELS[drum]
        pattern = patterns[drum]
        for bar in range(song.n_bars):
            fill = rng.random() < 0.15  # occasional variation: a few extra ghost hits
            for step in np.flatnonzero(pattern > 0):
                vel = pattern[step] * rng.uniform(0.85, 1.0)
                _place(track, sound, song.step_time_s(bar, int(step)) + rng.normal(0, 0.004),
                       song.sample_rate, vel)
            if fill and drum in ("snare", "kick"):
                for step in rng.choice(16, size=2, replace=False):
                    _place(track, sound, song.step_time_s(bar, int(step)), song.sample_rate, 0.4)
    return track
