"""The music of the rendered corpus: pieces as note lists, instrument families, and a small MIDI writer.

`msd.miniature.rendered` turns each `Arrangement` built here into a MIDI file, renders it with
FluidSynth and labels it. Two sources of pieces:

    corpus     a work of the `music21` package's corpus (Bach chorales, Palestrina masses, madrigals,
               trecento songs, string quartets...): its parts, at a drawn tempo, each played by an
               instrument of a drawn family (transposed by octaves into the family's range)
    generated  a song made here: a chord progression in a drawn key, voiced as block chords,
               arpeggios or strums, a bass line and a melody, in one of several styles

Drum parts (channel 10, General MIDI kit) are added to most generated songs and to some corpus pieces.
Parts may enter late or stop early, so a family can sound for less than the whole clip.

Everything is drawn from one `numpy.random.Generator`, so an arrangement is a function of its seed.
Times are seconds from the clip start; pitches are MIDI note numbers; velocities 1..127.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# family -> General MIDI programs (0-based) that sound like it. The first twelve are MagnaTagATune's
# instrument tags; bass, organ and brass are extra families (labelled too, and distractors for the rest).
FAMILIES: dict[str, tuple[int, ...]] = {
    "piano": (0, 1, 2, 3),
    "harpsichord": (6,),
    "guitar": (24, 25, 26, 27, 28, 29, 30),
    "violin": (40,),
    "cello": (42,),
    "strings": (44, 48, 49),
    "harp": (46,),
    "flute": (72, 73, 74, 75),
    "sitar": (104,),
    "synth": (50, 51, 80, 81, 82, 84, 87, 88, 89, 90, 91, 94),
    "choir": (52, 53),
    "drums": (),
    "bass": (32, 33, 34, 35, 36, 38, 39),
    "organ": (16, 17, 19, 20),
    "brass": (56, 57, 60, 61),
}
TAGS = tuple(FAMILIES)
# MIDI pitch range each family plays in (notes are moved by octaves into it).
RANGES: dict[str, tuple[int, int]] = {
    "piano": (33, 96), "harpsichord": (36, 89), "guitar": (40, 84), "violin": (55, 100), "cello": (36, 76),
    "strings": (36, 96), "harp": (28, 100), "flute": (60, 96), "sitar": (48, 84), "synth": (36, 96),
    "choir": (45, 79), "bass": (28, 55), "organ": (36, 91), "brass": (40, 82),
}
MELODY_FAMILIES = ("piano", "guitar", "violin", "flute", "synth", "harpsichord", "sitar", "choir", "brass",
                   "organ", "harp", "cello")
HARMONY_FAMILIES = ("piano", "guitar", "strings", "organ", "synth", "harp", "harpsichord", "choir", "brass")
BASS_FAMILIES = ("bass", "bass", "cello", "piano", "synth")
UNIFORM_ENSEMBLES = ("strings", "choir", "organ", "piano", "brass", "guitar", "synth", "harpsichord", "harp")
DRUM_CHANNEL = 9
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)          # GM2 kit programs; SoundFonts without one fall back to kit 0
KICK, SNARE, RIM, CLAP, HAT, OPEN_HAT, RIDE, CRASH, TOM_LO, TOM_HI, SHAKER, CONGA = (
    36, 38, 37, 39, 42, 46, 51, 49, 45, 50, 70, 63)
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = ((0, 4, 5, 3), (1, 4, 0, 0), (0, 3, 4, 0), (5, 3, 0, 4), (0, 5, 3, 4), (0, 0, 3, 3, 0, 0, 4, 3),
                (5, 4, 3, 4), (0, 2, 3, 4))
STYLES = ("rock", "pop", "waltz", "bossa", "funk", "ballad", "electronic", "shuffle", "ambient", "folk")


@dataclass
class Part:
    """One instrument: `notes` rows (start_s, duration_s, pitch, velocity); drums have program -1."""
    family: str
    program: int
    notes: list[tuple[float, float, int, int]] = field(default_factory=list)
    volume: int = 100               # CC7
    pan: int = 64                   # CC10
    reverb: int = 40                # CC91 send
    chorus: int = 0                 # CC93 send

    @property
    def is_drums(self) -> bool:
        return self.family == "drums"


@dataclass
class Arrangement:
    """A clip's music: its parts, where it comes from (`piece`, the split key) and what it is (`style`)."""
    piece: str
    style: str
    parts: list[Part]


def stable_seed(*keys: object) -> int:
    """A 64-bit seed from `keys` (SHA-256 of their text), the same in every process."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, keys)).encode()).digest()[:8], "little")


def sounding_fraction(notes: list[tuple[float, float, int, int]], length_s: float) -> float:
    """The fraction of [0, length_s) during which at least one of `notes` sounds (union of intervals)."""
    spans = sorted((max(0.0, s), min(length_s, s + d)) for s, d, _, _ in notes if s < length_s and d > 0)
    covered, end = 0.0, 0.0
    for start, stop in spans:
        if stop <= end:
            continue
        covered += stop - max(start, end)
        end = stop
    return covered / length_s


def family_fractions(arrangement: Arrangement, length_s: float) -> dict[str, float]:
    """For each family in `arrangement`, the fraction of the clip during which it sounds."""
    notes: dict[str, list] = {}
    for part in arrangement.parts:
        notes.setdefault(part.family, []).extend(part.notes)
    return {family: sounding_fraction(rows, length_s) for family, rows in notes.items()}


def into_range(pitch: int, family: str) -> int:
    low, high = RANGES[family]
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def _mix(part: Part, rng: np.random.Generator) -> Part:
    """Draw the part's mixer settings: level, pan, reverb and chorus sends."""
    part.volume = int(rng.integers(70, 128))
    part.pan = int(np.clip(rng.normal(64, 28), 0, 127))
    part.reverb = int(rng.integers(0, 110))
    part.chorus = int(rng.integers(0, 90)) if rng.random() < 0.5 else 0
    return part


def _instrument(family: str, rng: np.random.Generator) -> Part:
    programs = FAMILIES[family]
    return _mix(Part(family, int(rng.choice(programs)) if programs else -1), rng)


def _active_span(rng: np.random.Generator, length_s: float) -> tuple[float, float]:
    """When a part plays: mostly the whole clip, sometimes entering late or stopping early."""
    roll = rng.random()
    if roll < 0.7:
        return 0.0, length_s
    if roll < 0.85:
        return float(rng.uniform(0.1, 0.9) * length_s), length_s
    return 0.0, float(rng.uniform(0.1, 0.9) * length_s)


def _trim(notes, span: tuple[float, float]):
    start, stop = span
    return [(s, min(d, stop - s), p, v) for s, d, p, v in notes if start <= s < stop]


# ------------------------------------------------------------------------------------------- drums
def drum_part(style: str, beat_s: float, length_s: float, rng: np.random.Generator) -> Part:
    """A drum kit part in `style`: kick/snare/hats (or rides, shakers, congas) with fills and crashes."""
    part = _instrument("drums", rng)
    part.program = int(rng.choice(DRUM_KITS))
    beats = 3 if style == "waltz" else 4
    grid = {"funk": 4, "electronic": 4, "bossa": 2, "shuffle": 3}.get(style, 2)  # subdivisions per beat
    bar_s = beats * beat_s
    hat = int(rng.choice((HAT, HAT, RIDE, SHAKER) if style not in ("electronic", "funk") else (HAT, OPEN_HAT)))
    base = int(rng.integers(70, 115))
    n_bars = int(np.ceil(length_s / bar_s))
    for bar in range(n_bars):
        t0 = bar * bar_s
        fill = bar % 4 == 3 and rng.random() < 0.4
        for step in range(beats * grid):
            beat, sub = divmod(step, grid)
            t = t0 + (beat + sub / grid) * beat_s
            hits = []
            if style == "electronic":
                hits += [KICK] if sub == 0 else []
                hits += [CLAP] if sub == 0 and beat % 2 == 1 else []
                hits += [OPEN_HAT] if sub == 2 else [hat] if sub % 2 == 1 else []
            elif style == "waltz":
                hits += [KICK] if step == 0 else [SNARE] if sub == 0 else []
                hits += [hat] if sub == 0 else []
            elif style == "bossa":
                hits += [KICK] if sub == 0 else []
                hits += [RIM] if step in (0, 3, 6) else []
                hits += [hat]
            elif style == "ballad":
                hits += [KICK] if step == 0 else [SNARE] if step == 2 * grid else []
                hits += [hat] if sub == 0 else []
            else:  # rock, pop, funk, shuffle, folk: backbeat on 2 and 4
                if sub == 0 and beat % 2 == 0 or (style == "funk" and step in (7, 10)):
                    hits.append(KICK)
                if sub == 0 and beat % 2 == 1:
                    hits.append(SNARE)
                if style != "shuffle" or sub != 1:
                    hits.append(hat)
            if fill and beat >= beats - 1:
                hits = [int(rng.choice((SNARE, TOM_LO, TOM_HI)))]
            if bar % 8 == 0 and step == 0 and rng.random() < 0.6:
                hits.append(CRASH)
            if style in ("bossa", "folk") and rng.random() < 0.15:
                hits.append(CONGA)
            for note in hits:
                accent = 1.0 if sub == 0 else 0.75
                velocity = int(np.clip(base * accent + rng.normal(0, 8), 20, 127))
                part.notes.append((t, beat_s / grid, note, velocity))
    return part


# ---------------------------------------------------------------------------------------- generated
def generated_song(piece: str, rng: np.random.Generator, length_s: float) -> Arrangement:
    """A song: chords (block, arpeggio or strum), bass line, melody and, mostly, drums, in a drawn style."""
    style = str(rng.choice(STYLES))
    bpm = float(rng.uniform(60, 90) if style in ("ballad", "ambient") else rng.uniform(80, 150))
    beat_s = 60.0 / bpm
    beats = 3 if style == "waltz" else 4
    minor = rng.random() < 0.4
    scale = MINOR if minor else MAJOR
    key = int(rng.integers(0, 12))
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    bars_per_chord = 2 if style == "ambient" else 1
    bar_s = beats * beat_s
    n_bars = int(np.ceil(length_s / bar_s))

    def chord(degree: int) -> list[int]:
        return [key + 12 * (i // 7) + scale[i % 7] for i in (degree, degree + 2, degree + 4)]

    parts = []
    n_harmony = 1 + int(rng.random() < 0.4)
    for _ in range(n_harmony):
        family = str(rng.choice(("synth", "strings", "organ", "choir")) if style in ("ambient", "electronic")
                     else rng.choice(HARMONY_FAMILIES))
        part = _instrument(family, rng)
        voicing = str(rng.choice(("block", "arpeggio", "strum") if family in ("guitar", "harp", "piano")
                                 else ("block", "block", "arpeggio")))
        octave = 48 + 12 * int(rng.integers(0, 2))
        for bar in range(n_bars):
            pitches = [into_range(octave + p, family) for p in chord(progression[(bar // bars_per_chord) % len(progression)])]
            t0 = bar * bar_s
            if voicing == "block":
                hold = bar_s * (1.0 if rng.random() < 0.6 else 0.5)
                for repeat in range(1 if hold == bar_s else 2):
                    for p in pitches:
                        part.notes.append((t0 + repeat * hold, hold * 0.95, p, int(rng.integers(50, 105))))
            elif voicing == "arpeggio":
                step_s = beat_s / 2
                cycle = pitches + [pitches[1]] if rng.random() < 0.5 else pitches + [pitches[0] + 12]
                for k in range(int(round(bar_s / step_s))):
                    part.notes.append((t0 + k * step_s, step_s * 1.8, cycle[k % len(cycle)], int(rng.integers(45, 100))))
            else:  # strum: each chord tone a little after the previous one, on every beat
                for beat in range(beats):
                    for k, p in enumerate(pitches + [pitches[0] + 12]):
                        part.notes.append((t0 + beat * beat_s + 0.015 * k, beat_s * 0.9, p, int(rng.integers(50, 110))))
        part.notes = _trim(part.notes, _active_span(rng, length_s))
        parts.append(part)

    bass_family = str(rng.choice(BASS_FAMILIES if style not in ("electronic",) else ("synth", "bass")))
    bass = _instrument(bass_family, rng)
    pattern = str(rng.choice(("root", "root-fifth", "walking", "eighths")))
    for bar in range(n_bars):
        root = key + scale[progression[(bar // bars_per_chord) % len(progression)] % 7]
        for beat in range(beats):
            if pattern == "root" and beat not in (0, 2):
                continue
            pitch = {"root-fifth": root + (7 if beat % 2 else 0),
                     "walking": key + scale[(progression[bar % len(progression)] + beat) % 7]}.get(pattern, root)
            for half in range(2 if pattern == "eighths" else 1):
                t = bar * bar_s + (beat + half / 2) * beat_s
                hold = beat_s * (2 if pattern == "root" else 0.5 if pattern == "eighths" else 1) * 0.9
                bass.notes.append((t, hold, into_range(36 + pitch % 12, bass_family if bass_family != "synth" else "bass"),
                                   int(rng.integers(70, 120))))
    bass.notes = _trim(bass.notes, _active_span(rng, length_s))
    parts.append(bass)

    if rng.random() < 0.85:
        family = str(rng.choice(MELODY_FAMILIES))
        melody = _instrument(family, rng)
        degree, t = int(rng.integers(7, 12)), 0.0
        durations = np.array([0.5, 1.0, 1.0, 2.0, 1.5]) * beat_s
        while t < length_s:
            duration = float(rng.choice(durations))
            if rng.random() < 0.15:      # a rest
                t += duration
                continue
            degree = int(np.clip(degree + rng.choice((-2, -1, -1, 0, 1, 1, 2, 3, -3)), 3, 18))
            pitch = into_range(48 + key + 12 * (degree // 7) + scale[degree % 7], family)
            melody.notes.append((t, duration * 0.9, pitch, int(rng.integers(60, 120))))
            t += duration
        melody.notes = _trim(melody.notes, _active_span(rng, length_s))
        parts.append(melody)

    if style != "ambient" and rng.random() < 0.85:
        drums = drum_part(style, beat_s, length_s, rng)
        drums.notes = _trim(drums.notes, _active_span(rng, length_s))
        parts.append(drums)
    return Arrangement(piece, style, [p for p in parts if p.notes])


# ------------------------------------------------------------------------------------------- corpus
def corpus_arrangement(piece: str, voices: list[list[tuple[float, float, int]]], rng: np.random.Generator,
                       length_s: float) -> Arrangement:
    """Orchestrate a corpus work for one clip.

    Args:
        piece: the work's name (the split key).
        voices: its parts from the top voice down, each a list of (onset, duration, pitch) with times in
            quarter notes (see `rendered.read_corpus_voices`).
        rng: the clip's generator.
        length_s: clip length; the work loops if it is shorter.
    """
    bpm = float(rng.uniform(55, 130))
    beat_s = 60.0 / bpm
    voices = voices[:4]
    uniform = rng.random() < 0.35
    ensemble = str(rng.choice(UNIFORM_ENSEMBLES))
    parts = []
    for index, voice in enumerate(voices):
        lowest = index == len(voices) - 1 and len(voices) > 1
        if uniform:
            family = ensemble
        elif lowest and rng.random() < 0.5:
            family = str(rng.choice(("cello", "bass", "piano", "organ", "strings")))
        else:
            family = str(rng.choice(MELODY_FAMILIES + ("strings",)))
        part = _instrument(family, rng)
        span_q = max(end for _, _, end in ((o, d, o + d) for o, d, _ in voice))
        start_q = float(rng.integers(0, max(1, int(span_q // 2)))) if span_q * beat_s > 2 * length_s else 0.0
        loop, offset = 0, 0.0
        dynamics = int(rng.integers(55, 110))
        while offset < length_s and loop < 64:
            for onset, duration, pitch in voice:
                t = (onset - start_q) * beat_s + offset
                if t < 0 or onset < start_q:
                    continue
                if t >= length_s:
                    break
                velocity = int(np.clip(dynamics + rng.normal(0, 10), 15, 127))
                part.notes.append((t, duration * beat_s * 0.97, into_range(pitch, family), velocity))
            offset += (span_q - start_q) * beat_s
            start_q, loop = 0.0, loop + 1
        part.notes = _trim(part.notes, _active_span(rng, length_s) if len(voices) > 1 else (0.0, length_s))
        parts.append(part)
    if rng.random() < 0.35:
        style = str(rng.choice(("rock", "pop", "ballad", "waltz", "bossa", "folk")))
        drums = drum_part(style, beat_s, length_s, rng)
        drums.notes = _trim(drums.notes, _active_span(rng, length_s))
        parts.append(drums)
    return Arrangement(piece, "corpus" + ("-uniform" if uniform else ""), [p for p in parts if p.notes])


# ------------------------------------------------------------------------------------------- MIDI
TICKS_PER_BEAT = 480
MIDI_TEMPO_US = 500_000             # 120 bpm: one beat 0.5 s, so 960 ticks per second


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_bytes(arrangement: Arrangement) -> bytes:
    """A format-0 Standard MIDI File of `arrangement` (one channel per part, drums on channel 10)."""
    ticks_per_s = TICKS_PER_BEAT * 1_000_000 / MIDI_TEMPO_US
    events: list[tuple[int, int, bytes]] = []      # (tick, order, message): note-offs before note-ons
    channels = [c for c in range(16) if c != DRUM_CHANNEL]
    melodic = 0
    for part in arrangement.parts:
        if part.is_drums:
            channel = DRUM_CHANNEL
        else:
            if melodic >= len(channels):
                continue                            # more than 15 melodic parts: never made here
            channel, melodic = channels[melodic], melodic + 1
        setup = [bytes((0xB0 | channel, 7, part.volume)), bytes((0xB0 | channel, 10, part.pan)),
                 bytes((0xB0 | channel, 91, part.reverb)), bytes((0xB0 | channel, 93, part.chorus))]
        if part.is_drums:
            setup.append(bytes((0xC0 | channel, max(0, part.program))))
        else:
            setup += [bytes((0xB0 | channel, 0, 0)), bytes((0xC0 | channel, part.program))]
        events += [(0, 0, message) for message in setup]
        for start, duration, pitch, velocity in part.notes:
            on = int(round(start * ticks_per_s))
            off = max(on + 1, int(round((start + duration) * ticks_per_s)))
            pitch, velocity = int(np.clip(pitch, 0, 127)), int(np.clip(velocity, 1, 127))
            events.append((on, 2, bytes((0x90 | channel, pitch, velocity))))
            events.append((off, 1, bytes((0x80 | channel, pitch, 0))))
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray(b"\x00\xFF\x51\x03" + MIDI_TEMPO_US.to_bytes(3, "big"))
    tick = 0
    for when, _, message in events:
        track += _varlen(when - tick) + message
        tick = when
    track += b"\x00\xFF\x2F\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def write_midi(arrangement: Arrangement, path: Path) -> None:
    path.write_bytes(midi_bytes(arrangement))
