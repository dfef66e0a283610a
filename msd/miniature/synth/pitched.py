"""Pitched instruments of the synthesiser: each `render_*(song)` returns float32 [n_samples], mono."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from msd.miniature.synth.drums import EIGHTHS, OFFBEATS, SIXTEENTHS
from msd.miniature.synth.signals import (
    _cached,
    _envelope,
    _filter,
    _harmonics_limit,
    _place,
    _saw,
    _sine,
    _square,
    _time,
    _wrap,
)
from msd.miniature.synth.song import STEPS_PER_BAR, Song, midi_hz


def _piano_note(song: Song, pitches: tuple[int, ...], length_s: float, bright: float) -> np.ndarray:
    """A piano chord (or note): slightly inharmonic partials decaying faster as they go up."""
    n = int((length_s + 0.15) * song.sample_rate)
    t = _time(n, song.sample_rate)
    out = np.zeros(n, dtype=np.float32)
    for pitch in pitches:
        f0 = float(midi_hz(pitch))
        k = np.arange(1, _harmonics_limit(f0, song.sample_rate, 10) + 1, dtype=np.float32)[:, None]
        freqs = f0 * k * np.sqrt(1 + 0.0004 * k ** 2)
        amps = (bright ** (k - 1)) / k
        decay = np.exp(-t * (0.9 + 0.7 * k) * (f0 / 260.0) ** 0.3)
        out += (amps * decay * _sine(freqs * t)).sum(axis=0)
    env = _envelope(n, song.sample_rate, 0.004, 10.0, 1.0, 0.15)
    return out * env / len(pitches) ** 0.5


def render_piano(song: Song) -> np.ndarray:
    """Pop piano: bright triads (sometimes with an added 2nd) in a syncopated bar rhythm."""
    rng = song.rng
    rhythm = [(0, 6), (6, 4), (10, 6)] if rng.random() < 0.5 else [(0, 4), (4, 4), (8, 4), (12, 4)]
    octave = int(rng.integers(3, 5))
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        chord = tuple(song.chord(bar, octave, 3) + [song.chord(bar, octave + 1, 1)[0]])
        for step, length in rhythm:
            length_s = length * song.step_s
            sound = _cached(song, ("piano", chord, round(length_s, 3)),
                            lambda: _piano_note(song, chord, length_s, 0.75))
            _place(track, sound, song.step_time_s(bar, step), song.sample_rate, rng.uniform(0.7, 1.0))
    return track


def render_jazz_piano(song: Song) -> np.ndarray:
    """Jazz comping: rootless 7th/9th voicings on swung, syncopated hits."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        root = song.chord_degree(bar)
        # 3rd, 5th, 7th and 9th above the root: the extended harmony that marks jazz.
        chord = tuple(song.degree_pitch(root + d, 3) for d in (2, 4, 6, 8))
        steps = sorted(rng.choice([0, 2, 4, 6, 8, 10, 12, 14], size=int(rng.integers(2, 4)), replace=False))
        for step in steps:
            length_s = 3 * song.step_s
            sound = _cached(song, ("jazz_piano", chord), lambda: _piano_note(song, chord, length_s, 0.55))
            _place(track, sound, song.step_time_s(bar, int(step)), song.sample_rate, rng.uniform(0.6, 1.0))
    return track


def _plucked_bass_note(song: Song, pitch: int, length_s: float, bright: float) -> np.ndarray:
    n = int((length_s + 0.05) * song.sample_rate)
    t = _time(n, song.sample_rate)
    f0 = float(midi_hz(pitch))
    tone = 0.7 * _sine(f0 * t) + 0.35 * bright * _saw(f0 * t)
    tone = _filter(tone, song.sample_rate, "lowpass", 300.0 + 2500.0 * bright)
    return tone * _envelope(n, song.sample_rate, 0.005, 0.5, 0.4, 0.05)


def render_bass(song: Song) -> np.ndarray:
    """Picked electric bass on 8th notes, chord roots with an occasional fifth or octave."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        root = song.chord(bar, 1, 1)[0]
        for step in EIGHTHS:
            pitch = root + (int(rng.choice([7, 12])) if step in (6, 14) and rng.random() < 0.3 else 0)
            length_s = 1.8 * song.step_s
            sound = _cached(song, ("bass", pitch), lambda: _plucked_bass_note(song, pitch, length_s, 0.5))
            _place(track, sound, song.step_time_s(bar, step), song.sample_rate, rng.uniform(0.8, 1.0))
    return track


def render_walking_bass(song: Song) -> np.ndarray:
    """Upright bass walking in quarter notes: root, chord tones, then a chromatic approach to the next root."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        root = song.chord(bar, 1, 1)[0]
        next_root = song.chord(bar + 1, 1, 1)[0]
        chord = song.chord(bar, 1, 4)
        line = [root, int(rng.choice(chord[1:])), int(rng.choice(chord[1:])), next_root + int(rng.choice([-1, 1]))]
        for beat, pitch in enumerate(line):
            sound = _cached(song, ("walking", pitch),
                            lambda: _plucked_bass_note(song, pitch, 0.95 * song.beat_s, 0.15))
            _place(track, sound, song.step_time_s(bar, 4 * beat), song.sample_rate, rng.uniform(0.8, 1.0))
    return track


def _sub_note(song: Song, pitch: int, length_s: float) -> np.ndarray:
    n = int(length_s * song.sample_rate)
    t = _time(n, song.sample_rate)
    f0 = float(midi_hz(pitch))
    freq = f0 * (1 + 0.5 * np.exp(-t / 0.04))
    tone = np.tanh(1.6 * _sine(np.cumsum(freq, dtype=np.float64) / song.sample_rate))
    return tone * _envelope(n, song.sample_rate, 0.003, 0.9, 0.5, 0.1)


def render_sub_bass(song: Song) -> np.ndarray:
    """808 sub bass: long sine notes with a pitch drop, on the kick's rhythm, 35-70 Hz."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        pitch = song.chord(bar, 1, 1)[0]
        pitch = pitch - 12 if pitch > 37 else pitch
        for step, length in ((0, 7), (7, 3), (10, 6)):
            sound = _cached(song, ("sub", pitch, length), lambda: _sub_note(song, pitch, length * song.step_s))
            _place(track, sound, song.step_time_s(bar, step), song.sample_rate, rng.uniform(0.85, 1.0))
    return track


def _synth_note(song: Song, pitches: Sequence[int], length_s: float, *, cutoff_hz: float, detune: float = 0.006,
                voices: int = 2, attack_s: float = 0.01, decay_s: float = 0.3, sustain: float = 0.7,
                release_s: float = 0.05, square: bool = False) -> np.ndarray:
    """Detuned sawtooth (or square) voices through a low-pass filter."""
    n = int((length_s + release_s) * song.sample_rate)
    t = _time(n, song.sample_rate)
    out = np.zeros(n, dtype=np.float32)
    for pitch in pitches:
        f0 = float(midi_hz(pitch))
        for v in range(voices):
            ratio = 1 + detune * (v - (voices - 1) / 2)
            wave = _square if square and v % 2 else _saw
            out += wave(f0 * ratio * t + v / voices)
    out = _filter(out, song.sample_rate, "lowpass", cutoff_hz)
    return out * _envelope(n, song.sample_rate, attack_s, decay_s, sustain, release_s) / (len(pitches) * voices)


def render_synth_bass(song: Song) -> np.ndarray:
    """Dance bass: bright, resonant-sounding saw notes on the off-beat 8ths."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        pitch = song.chord(bar, 2, 1)[0]
        for step in OFFBEATS:
            p = pitch + (12 if rng.random() < 0.25 else 0)
            sound = _cached(song, ("synth_bass", p), lambda: _synth_note(
                song, [p], 1.6 * song.step_s, cutoff_hz=4500.0, decay_s=0.12, sustain=0.3, voices=2))
            _place(track, sound, song.step_time_s(bar, step), song.sample_rate, rng.uniform(0.85, 1.0))
    return 2.0 * track


def render_pad(song: Song) -> np.ndarray:
    """Electronic pad: detuned saw chords held for the bar, soft attack."""
    track = np.zeros(song.n_samples, dtype=np.float32)
    octave = int(song.rng.integers(3, 5))
    for bar in range(song.n_bars):
        chord = tuple(song.chord(bar, octave, 3))
        sound = _cached(song, ("pad", chord), lambda: _synth_note(
            song, chord, song.bar_s, cutoff_hz=2200.0, voices=3, detune=0.012, attack_s=0.25, decay_s=1.0,
            sustain=0.8, release_s=0.3))
        _place(track, sound, song.step_time_s(bar, 0), song.sample_rate, 1.0)
    return 1.5 * track


def render_saw_lead(song: Song) -> np.ndarray:
    """Sawtooth lead: an arpeggio over the chord in 16ths/8ths, two octaves up."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    step_len = int(rng.choice([2, 2, 1])) if song.bpm < 125 else 2
    shape = rng.permutation(4)
    for bar in range(song.n_bars):
        chord = song.chord(bar, 5, 3) + song.chord(bar, 6, 1)
        for i, step in enumerate(range(0, STEPS_PER_BAR, step_len)):
            pitch = chord[int(shape[i % 4])]
            sound = _cached(song, ("lead", pitch, step_len), lambda: _synth_note(
                song, [pitch], 0.9 * step_len * song.step_s, cutoff_hz=6000.0, voices=1, decay_s=0.15, sustain=0.5))
            _place(track, sound, song.step_time_s(bar, step), song.sample_rate, rng.uniform(0.7, 1.0))
    return 1.2 * track


def render_poly_synth(song: Song) -> np.ndarray:
    """80s analog poly synth: detuned saw+square brass chords, filter opening on each hit."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        chord = tuple(song.chord(bar, 4, 3))
        for step, length in ((0, 6), (6, 10)):
            sound = _cached(song, ("poly", chord, length), lambda: _synth_note(
                song, chord, length * song.step_s, cutoff_hz=3200.0, voices=2, detune=0.01, square=True,
                attack_s=0.03, decay_s=0.4, sustain=0.6, release_s=0.1))
            _place(track, sound, song.step_time_s(bar, step), song.sample_rate, rng.uniform(0.8, 1.0))
    return 1.6 * track


def render_rave_stab(song: Song) -> np.ndarray:
    """90s rave stabs: short bright minor-chord hits on a syncopated rhythm."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        root = song.chord(bar, 4, 1)[0]
        chord = (root, root + 3, root + 7, root + 12)
        for step in (0, 3, 6, 10):
            sound = _cached(song, ("stab", chord), lambda: _synth_note(
                song, chord, 0.18, cutoff_hz=5000.0, voices=2, detune=0.015, decay_s=0.08, sustain=0.2, square=True))
            _place(track, sound, song.step_time_s(bar, step), song.sample_rate, rng.uniform(0.8, 1.0))
    return 1.6 * track


def _distorted_chord(song: Song, pitches: Sequence[int], length_s: float, *, drive: float, decay_s: float,
                     cutoff_hz: float) -> np.ndarray:
    n = int((length_s + 0.03) * song.sample_rate)
    t = _time(n, song.sample_rate)
    raw = sum(_saw(float(midi_hz(p)) * (1 + 0.003 * i) * t) for i, p in enumerate(pitches)) / len(pitches)
    env = _envelope(n, song.sample_rate, 0.003, decay_s, 0.5, 0.03)
    distorted = np.tanh(drive * raw * env)
    return _filter(_filter(distorted, song.sample_rate, "lowpass", cutoff_hz, 4), song.sample_rate, "highpass", 80.0)


def render_power_chords(song: Song) -> np.ndarray:
    """Rock guitar: distorted power chords (root, fifth, octave), 8th chugs with held accents."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        root = song.chord(bar, 2, 1)[0]
        chord = (root, root + 7, root + 12)
        held = rng.random() < 0.3
        steps = [(0, 16)] if held else [(s, 2) for s in EIGHTHS]
        for step, length in steps:
            sound = _cached(song, ("power", chord, length), lambda: _distorted_chord(
                song, chord, length * song.step_s, drive=6.0, decay_s=0.25 if length == 2 else 2.0, cutoff_hz=4500.0))
            _place(track, sound, song.step_time_s(bar, step), song.sample_rate, rng.uniform(0.8, 1.0))
    return 0.8 * track


def render_heavy_guitar(song: Song) -> np.ndarray:
    """Metal guitar: very high gain, low-tuned 16th chugs locked to the double kick."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        root = song.chord(bar, 1, 1)[0]
        root = root + 12 if root < 28 else root
        chord = (root, root + 7, root + 12)
        for step in SIXTEENTHS:
            sound = _cached(song, ("heavy", chord), lambda: _distorted_chord(
                song, chord, 0.95 * song.step_s, drive=25.0, decay_s=0.12, cutoff_hz=5500.0))
            _place(track, sound, song.step_time_s(bar, step), song.sample_rate, rng.uniform(0.8, 1.0))
    return 0.8 * track


def _bowed_note(song: Song, pitch: int, length_s: float, rng: np.random.Generator, *,
                voices: int = 3) -> np.ndarray:
    """A section of bowed strings: detuned saws with 5-6 Hz vibrato, slow attack and release."""
    n = int((length_s + 0.4) * song.sample_rate)
    t = _time(n, song.sample_rate)
    f0 = float(midi_hz(pitch))
    out = np.zeros(n, dtype=np.float32)
    for v in range(voices):
        rate = rng.uniform(5.0, 6.2)
        depth = 0.004 * f0
        # Vibrato as an analytic phase: integral of f0 + depth * sin(2 pi rate t).
        cycles = f0 * (1 + 0.004 * (v - 1)) * t + depth / (2 * np.pi * rate) * (1 - np.cos(2 * np.pi * rate * t))
        out += _saw(cycles + rng.random())
    out = _filter(out, song.sample_rate, "lowpass", min(5000.0, 6 * f0 + 1500.0))
    return out * _envelope(n, song.sample_rate, rng.uniform(0.25, 0.5), 10.0, 1.0, 0.4) / voices


def render_strings(song: Song) -> np.ndarray:
    """Classical strings: sustained chords (cellos to violas) and a violin melody in half notes."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(0, song.n_bars, song.chord_bars):
        length_s = song.chord_bars * song.bar_s
        for pitch in [song.chord(bar, 2, 1)[0]] + song.chord(bar, 3, 3):
            sound = _cached(song, ("strings", pitch, song.chord_bars), lambda: _bowed_note(song, pitch, length_s, rng))
            _place(track, sound, song.step_time_s(bar, 0) - 0.2, song.sample_rate, 0.6)
    degree = 7
    for bar in range(song.n_bars):
        for half in (0, 8):
            degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 4, 11))
            pitch = song.degree_pitch(degree, 4)
            sound = _cached(song, ("violin", pitch), lambda: _bowed_note(song, pitch, 2 * song.beat_s, rng))
            _place(track, sound, song.step_time_s(bar, half), song.sample_rate, 0.9)
    return 1.4 * track


def _ambient_chord(song: Song, pitches: Sequence[int], length_s: float, rng: np.random.Generator) -> np.ndarray:
    """Slowly evolving pad: each note's 2nd and 3rd harmonics swell and fade with slow LFOs."""
    n = int(length_s * song.sample_rate)
    t = _time(n, song.sample_rate)
    out = np.zeros(n, dtype=np.float32)
    for pitch in pitches:
        phase = _wrap(float(midi_hz(pitch)) * t)
        lfo = 0.5 + 0.5 * np.sin(np.float32(2 * np.pi * rng.uniform(0.05, 0.2)) * t + np.float32(rng.uniform(0, 6.3)))
        out += _sine(phase) * (0.6 + 0.4 * lfo) + _sine(2 * phase) * (0.3 * lfo)
        out += _sine(3 * phase) * (0.12 - 0.12 * lfo)
    fade = min(2.0, length_s / 3)
    return out * _envelope(n, song.sample_rate, fade, 10.0, 1.0, fade) / len(pitches)


def render_ambient_pad(song: Song) -> np.ndarray:
    """Ambient pads: wide chords crossfading every `chord_bars` bars (overlapping, so never silent)."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    length_s = song.chord_bars * song.bar_s
    for bar in range(0, song.n_bars, song.chord_bars):
        chord = song.chord(bar, 3, 3) + song.chord(bar, 4, 2)
        sound = _ambient_chord(song, chord, length_s + 2.0, rng)
        _place(track, sound, song.step_time_s(bar, 0) - 1.0, song.sample_rate, 1.0)
    return 1.6 * track


def render_bells(song: Song) -> np.ndarray:
    """Sparse high bell tones (FM-like inharmonic partials, long decay) over ambient pads."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    for bar in range(song.n_bars):
        if rng.random() < 0.6:
            pitch = song.degree_pitch(int(rng.integers(0, 7)), 5)
            n = int(2.5 * song.sample_rate)
            t = _time(n, song.sample_rate)
            f0 = float(midi_hz(pitch))
            bell = (_sine(f0 * t) + 0.4 * _sine(2.76 * f0 * t) * np.exp(-t / 0.4).astype(np.float32))
            bell *= np.exp(-t / 0.9).astype(np.float32) * np.minimum(1.0, t / 0.005).astype(np.float32)
            _place(track, bell, song.step_time_s(bar, int(rng.integers(0, 16))), song.sample_rate, 0.35)
    return track


def _karplus_strong(song: Song, pitch: int, length_s: float, rng: np.random.Generator) -> np.ndarray:
    """A plucked string by Karplus-Strong: a noise burst recirculated through an averaging delay line.

    Vectorised one period at a time: period k is the average of period k-1 and its one-sample shift.
    """
    period = max(2, int(round(song.sample_rate / float(midi_hz(pitch)))))
    n_periods = int(np.ceil(length_s * song.sample_rate / period))
    burst = _filter(rng.uniform(-1, 1, period).astype(np.float32), song.sample_rate, "lowpass", 5000.0)
    out = np.empty((n_periods, period), dtype=np.float32)
    out[0] = burst
    loss = 0.996 ** (220.0 / max(period, 1))
    last = 0.0
    for k in range(1, n_periods):
        prev = out[k - 1]
        shifted = np.concatenate(([last], prev[:-1]))
        last = prev[-1]
        out[k] = loss * 0.5 * (prev + shifted)
    sound = out.reshape(-1)[:int(length_s * song.sample_rate)]
    return sound * _envelope(sound.shape[0], song.sample_rate, 0.001, 10.0, 1.0, 0.05)


def render_acoustic_guitar(song: Song) -> np.ndarray:
    """Folk guitar: fingerpicked 8th-note arpeggios, with a strummed chord opening some bars."""
    rng = song.rng
    track = np.zeros(song.n_samples, dtype=np.float32)
    pattern = rng.permutation([0, 1, 2, 3, 2, 1, 3, 2])
    for bar in range(song.n_bars):
        chord = [song.chord(bar, 2, 1)[0]] + song.chord(bar, 3, 3)
        if rng.random() < 0.35:  # strum: the strings one after another, 12 ms apart
            for i, pitch in enumerate(chord):
                sound = _cached(song, ("ks", pitch, 0), lambda: _karplus_strong(song, pitch, 1.8, rng))
                _place(track, sound, song.step_time_s(bar, 0) + 0.012 * i, song.sample_rate, 0.8)
            steps = list(enumerate(EIGHTHS))[2:]
        else:
            steps = list(enumerate(EIGHTHS))
        for i, step in steps:
            pitch = chord[int(pattern[i])]
            variant = int(rng.integers(0, 2))
            sound = _cached(song, ("ks", pitch, variant), lambda: _karplus_strong(song, pitch, 1.8, rng))
            _place(track, sound, song.step_time_s(bar, step), song.sample_rate, rng.uniform(0.7, 1.0))
    return 1.5 * track
