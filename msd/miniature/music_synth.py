"""A deterministic synthesiser of music whose content matches its tags.

The miniature-MSD generator (`msd/synthetic.py`) and the MagnaTagATune/FMA generators use it to
write audio that a model can really learn: every tag has an audible signature that is clear in a
log-mel spectrogram (16 kHz, 96 mel bands), while keys, tempi, chord progressions, patterns, sounds,
levels and the stereo mix vary from seed to seed.

    audio = render_track(["rock", "male"], seed=7)   # float32 [1323000, 2], stereo, in [-1, 1]

What each tag means is the table `TAG_RECIPES` (instruments, tempo range, texture); the instruments
are described in `INSTRUMENTS`. Genres choose the backing band and the tempo, vocal tags add (or
exclude) a voice, decade tags add period sounds:

| tag          | instruments (see INSTRUMENTS)                                   | tempo (bpm) |
|--------------|-----------------------------------------------------------------|-------------|
| rock         | rock drums (kick, snare, 8th hats, crash), distorted power      | 100-140     |
|              | chords, picked bass                                             |             |
| metal        | metal drums (double kick 16ths), heavily distorted low guitar   | 150-200     |
|              | chugs, picked bass                                              |             |
| electronic   | four-on-the-floor kick with open hats, detuned saw pads,        | 110-135     |
|              | sawtooth lead arpeggio                                          |             |
| dance        | four-on-the-floor kick, claps on 2 and 4, 16th hats, bright     | 120-130     |
|              | off-beat synth bass                                             |             |
| jazz         | swung ride cymbal, pedal hat, walking upright bass, piano       | 100-160     |
|              | comping with 7th/9th chords (swing)                             |             |
| classical    | bowed string ensemble (vibrato, slow attacks) with a melody,    | 60-100      |
|              | hall reverb, no drums                                           |             |
| ambient      | slow evolving pads, sparse high bells, long reverb, no drums    | 60-80       |
| hip hop      | sparse heavy kick/snare, quiet hats, 808 sub bass               | 80-95       |
| folk         | plucked acoustic guitar (Karplus-Strong) arpeggios and strums,  | 80-120      |
|              | no drums                                                        |             |
| pop          | pop drums (kick, snare, 16th hats), bright piano chords, bass   | 100-120     |
| female       | sung formant-synthesised voice, f0 about 200-400 Hz             | -           |
| male         | sung formant-synthesised voice, f0 about 90-180 Hz              | -           |
| rap          | rhythmic spoken-like voiced bursts with consonant noise on a    | -           |
|              | 16th grid (pitch from `female`/`male`, else male)               |             |
| instrumental | no voice at all                                                 | -           |
| 80s          | gated-reverb snare, detuned analog poly-synth chords            | -           |
| 90s          | breakbeat drums, rave chord stabs                               | -           |

Tags combine: a genre with a vocal tag, two genres (the union of their instruments at a tempo both
allow, else the first genre's), a decade on top. Without a genre the backing is piano and bass.

Everything is vectorised numpy: notes are rendered once per distinct (pitch, length) and placed
with slice additions; the only Python loops run over notes, hits and string periods, never over
samples. 30 s of 44.1 kHz stereo renders in about 0.2-0.3 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.fft
import scipy.signal

GENRES = ("rock", "metal", "electronic", "dance", "jazz", "classical", "ambient", "hip hop", "folk", "pop")
VOCALS = ("female", "male", "rap", "instrumental")
DECADES = ("80s", "90s")
TAGS = GENRES + VOCALS + DECADES

STEPS_PER_BAR = 16  # drum patterns and rhythms are written on a 16th-note grid of 4/4 bars


@dataclass(frozen=True)
class TagRecipe:
    """What a tag sounds like.

    Attributes:
        kind: "genre", "vocal" or "decade".
        instruments: keys of `INSTRUMENTS` the tag adds to the mix.
        tempo_bpm: (low, high) tempo range in beats per minute; None when the tag sets no tempo.
        texture: a one-line description of the audible signature.
        drums: the drum style (key of `DRUM_STYLES`) or None for no drums.
        reverb_t60_s: reverberation time of the room, seconds (genres only).
    """

    kind: str
    instruments: tuple[str, ...]
    tempo_bpm: tuple[float, float] | None
    texture: str
    drums: str | None = None
    reverb_t60_s: float = 0.9


TAG_RECIPES: dict[str, TagRecipe] = {
    "rock": TagRecipe("genre", ("power_chords", "bass"), (100, 140),
                      "straight rock beat, distorted power-chord guitar on 8ths, picked bass", "rock", 0.9),
    "metal": TagRecipe("genre", ("heavy_guitar", "bass"), (150, 200),
                       "fast double-kick 16ths, heavily distorted low guitar chugs", "metal", 0.7),
    "electronic": TagRecipe("genre", ("pad", "saw_lead"), (110, 135),
                            "four-on-the-floor kick, detuned saw pads, sawtooth lead arpeggio", "four_floor", 1.4),
    "dance": TagRecipe("genre", ("synth_bass",), (120, 130),
                       "four-on-the-floor kick, claps, 16th hats, bright off-beat synth bass", "dance", 0.8),
    "jazz": TagRecipe("genre", ("jazz_piano", "walking_bass"), (100, 160),
                      "swung ride cymbal, walking upright bass, piano comping with 7th/9th chords", "jazz", 1.2),
    "classical": TagRecipe("genre", ("strings",), (60, 100),
                           "bowed string ensemble with vibrato and slow attacks, melody on top, no drums",
                           None, 2.2),
    "ambient": TagRecipe("genre", ("ambient_pad", "bells"), (60, 80),
                         "slow evolving pads, sparse bells, long reverb, no drums", None, 4.0),
    "hip hop": TagRecipe("genre", ("sub_bass",), (80, 95),
                         "slow sparse heavy kick and snare, quiet hats, 808 sub bass", "hip_hop", 0.6),
    "folk": TagRecipe("genre", ("acoustic_guitar",), (80, 120),
                      "plucked acoustic guitar arpeggios and strums (Karplus-Strong), no drums", None, 1.0),
    "pop": TagRecipe("genre", ("piano", "bass"), (100, 120),
                     "bright piano chords, straight kick/snare with 16th hats, bass", "pop", 1.0),
    "female": TagRecipe("vocal", ("voice_female",), None, "sung formant voice, f0 about 200-400 Hz"),
    "male": TagRecipe("vocal", ("voice_male",), None, "sung formant voice, f0 about 90-180 Hz"),
    "rap": TagRecipe("vocal", ("rap_voice",), None, "rhythmic spoken-like voiced bursts with consonants"),
    "instrumental": TagRecipe("vocal", (), None, "no voice"),
    "80s": TagRecipe("decade", ("poly_synth",), None,
                     "gated-reverb snare on 2 and 4, detuned analog poly-synth chords", "gated_snare"),
    "90s": TagRecipe("decade", ("rave_stab",), None, "breakbeat drums, rave chord stabs", "breakbeat"),
}

NO_GENRE_INSTRUMENTS = ("piano", "bass")  # the backing when no genre tag is given
NO_GENRE_TEMPO_BPM = (90.0, 120.0)

MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
# Chord progressions as 0-based scale degrees, one chord per bar (two bars for slow genres).
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 0, 4), (3, 4, 0, 0)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4)),
}
JAZZ_PROGRESSIONS = ((1, 4, 0, 0), (0, 5, 1, 4), (2, 5, 1, 4), (0, 3, 1, 4))

# Vowel formants (F1, F2, F3 in Hz, relative levels) of an adult male voice; a female voice
# scales them up by about 17 %.
VOWEL_FORMANTS_HZ = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010],
                              [570, 840, 2410], [300, 870, 2240], [660, 1720, 2410]], dtype=np.float64)
FORMANT_LEVELS = np.array([1.0, 0.55, 0.3])
FORMANT_BANDWIDTHS_HZ = np.array([90.0, 120.0, 170.0])


# ---------------------------------------------------------------------------------------------
# The song: tempo, key, harmony and the bar grid every part follows
# ---------------------------------------------------------------------------------------------

@dataclass
class Song:
    """Shared musical context of one track.

    Attributes:
        sample_rate: Hz.
        n_samples: length of the track in samples.
        bpm: tempo in beats per minute (a beat is a quarter note; 4 beats per bar).
        tonic: MIDI pitch class of the key (0 = C) .. 11.
        scale: int [7], semitone offsets of the mode.
        progression: scale degrees of the chords, one per `chord_bars` bars, cycled.
        chord_bars: bars per chord.
        swing: delay of off-beat 8ths, in 16th steps (0 = straight, 0.66 = triplet swing).
        rng: the generator for this part (each part gets its own stream).
        drum_styles: keys of `DRUM_STYLES` the kit plays together, plus "gated_snare" for the 80s snare.
        cache: rendered notes of this part, by (instrument, pitch, length...) key.
    """

    sample_rate: int
    n_samples: int
    bpm: float
    tonic: int
    scale: np.ndarray
    progression: tuple[int, ...]
    chord_bars: int
    swing: float
    rng: np.random.Generator
    drum_styles: tuple[str, ...] = ()
    cache: dict = field(default_factory=dict)

    @property
    def beat_s(self) -> float:
        return 60.0 / self.bpm

    @property
    def step_s(self) -> float:
        return self.beat_s / 4

    @property
    def bar_s(self) -> float:
        return 4 * self.beat_s

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate

    @property
    def n_bars(self) -> int:
        return int(np.ceil(self.duration_s / self.bar_s)) + 1

    def chord_degree(self, bar: int) -> int:
        return self.progression[(bar // self.chord_bars) % len(self.progression)]

    def degree_pitch(self, degree: int, octave: int) -> int:
        """MIDI pitch of a scale degree (may exceed 7: the next octave) in octave `octave` (4 = C4..B4)."""
        return 12 * (octave + 1) + self.tonic + int(self.scale[degree % 7]) + 12 * (degree // 7)

    def chord(self, bar: int, octave: int, size: int = 3) -> list[int]:
        """MIDI pitches of the chord at `bar`, stacked thirds from its root in `octave`."""
        root = self.chord_degree(bar)
        return [self.degree_pitch(root + 2 * i, octave) for i in range(size)]

    def step_time_s(self, bar: int, step: int) -> float:
        """Onset in seconds of 16th `step` of `bar`, with swing on the off-beat 8ths."""
        swing = self.swing if step % 4 == 2 else 0.0
        return (bar * STEPS_PER_BAR + step + swing) * self.step_s


def midi_hz(pitch: float | np.ndarray) -> np.ndarray:
    """Frequency in Hz of a MIDI pitch (69 = A4 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


# ---------------------------------------------------------------------------------------------
# Signal helpers (all vectorised)
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Drums: one sound per drum per track, placed on a 16th grid
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Pitched instruments: each returns float32 [n_samples], mono
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Voices: formant synthesis
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Instruments table and the mixer
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Instrument:
    """A part of the band.

    Attributes:
        description: what it plays and how it sounds.
        render: `render(song) -> float32 [n_samples]` mono.
        level_db: nominal mix level in dB (each track varies it by +-3 dB).
        reverb_send: fraction sent to the room reverb.
        pan: maximum absolute pan position (0 = centre, 1 = hard side).
    """

    description: str
    render: Callable[[Song], np.ndarray]
    level_db: float = 0.0
    reverb_send: float = 0.2
    pan: float = 0.5


INSTRUMENTS: dict[str, Instrument] = {
    "power_chords": Instrument("distorted power-chord guitar (root, fifth, octave), 8th chugs",
                               render_power_chords, -3.0, 0.15, 0.7),
    "heavy_guitar": Instrument("very high gain low-tuned guitar, 16th chugs", render_heavy_guitar, -3.0, 0.1, 0.7),
    "bass": Instrument("picked electric bass, 8ths on chord roots", render_bass, -2.0, 0.05, 0.1),
    "walking_bass": Instrument("upright bass walking in quarter notes", render_walking_bass, -1.0, 0.1, 0.2),
    "sub_bass": Instrument("808 sub bass with pitch drop", render_sub_bass, 0.0, 0.0, 0.0),
    "synth_bass": Instrument("bright saw synth bass on off-beat 8ths", render_synth_bass, -2.0, 0.05, 0.1),
    "piano": Instrument("bright piano triads in a syncopated rhythm", render_piano, -2.0, 0.25, 0.4),
    "jazz_piano": Instrument("piano comping with rootless 7th/9th voicings, swung", render_jazz_piano,
                             -3.0, 0.25, 0.5),
    "strings": Instrument("bowed string section with vibrato and slow attacks, violin melody", render_strings,
                          0.0, 0.5, 0.6),
    "pad": Instrument("detuned saw pad chords held for the bar", render_pad, -4.0, 0.4, 0.6),
    "ambient_pad": Instrument("slowly evolving crossfading pad chords", render_ambient_pad, 0.0, 0.7, 0.6),
    "bells": Instrument("sparse high bell tones", render_bells, -6.0, 0.8, 0.8),
    "saw_lead": Instrument("sawtooth lead arpeggio two octaves up", render_saw_lead, -6.0, 0.3, 0.5),
    "poly_synth": Instrument("80s detuned saw/square poly-synth chords", render_poly_synth, -4.0, 0.35, 0.6),
    "rave_stab": Instrument("90s rave chord stabs on a syncopated rhythm", render_rave_stab, -4.0, 0.3, 0.5),
    "acoustic_guitar": Instrument("Karplus-Strong plucked steel-string guitar, arpeggios and strums",
                                  render_acoustic_guitar, 0.0, 0.2, 0.4),
    "voice_female": Instrument("sung formant voice, f0 about 200-400 Hz",
                               lambda s: render_voice(s, low_pitch=55, high_pitch=67, formant_scale=1.17),
                               2.0, 0.3, 0.1),
    "voice_male": Instrument("sung formant voice, f0 about 90-180 Hz",
                             lambda s: render_voice(s, low_pitch=42, high_pitch=54, formant_scale=1.0),
                             2.0, 0.3, 0.1),
    "rap_voice": Instrument("rhythmic spoken-like voiced bursts", lambda s: render_rap(
        s, base_pitch=45, formant_scale=1.0), 2.0, 0.1, 0.05),
    "female_rap_voice": Instrument("rhythmic spoken-like voiced bursts, female", lambda s: render_rap(
        s, base_pitch=56, formant_scale=1.17), 2.0, 0.1, 0.05),
    "drums": Instrument("drum kit playing the union of the tags' styles (see DRUM_STYLES), e.g. rock: kick, "
                        "snare, 8th hats; 80s: gated-reverb snare; 90s: breakbeat", render_drums, 0.0, 0.1, 0.0),
}


def _reverb(send: np.ndarray, sample_rate: int, t60_s: float, rng: np.random.Generator) -> np.ndarray:
    """A room: convolution with decaying noise (two decorrelated channels), computed at a quarter rate.

    A reverb tail is dark, so it is convolved at about 11 kHz (4x fewer samples, a 4x shorter FFT)
    and brought back to `sample_rate` by polyphase resampling.

    Args:
        send: float32 [n_samples], the reverb bus.
    Returns:
        float32 [n_samples, 2].
    """
    n = send.shape[0]
    factor = max(1, sample_rate // 11025)
    m = n // factor
    low = send[:m * factor].reshape(m, factor).mean(axis=1)  # box-car decimation: plenty for a diffuse tail
    low_rate = sample_rate / factor
    ir_n = int(min(t60_s * 0.8, 3.0) * low_rate)
    t = np.arange(ir_n, dtype=np.float32) / np.float32(low_rate)
    decay = np.exp(-6.9 * t / np.float32(t60_s)) * np.minimum(1.0, t / 0.01)
    irs = rng.standard_normal((2, ir_n), dtype=np.float32) * decay
    irs /= np.sqrt((irs ** 2).sum(axis=1, keepdims=True))
    size = scipy.fft.next_fast_len(m + ir_n, real=True)
    wet = scipy.fft.irfft(scipy.fft.rfft(low, size)[None, :] * scipy.fft.rfft(irs, size, axis=1), size, axis=1)
    wet = wet[:, :m + 1].astype(np.float32)
    if factor == 1:
        return np.ascontiguousarray(wet[:, :n].T)
    # Linear interpolation back to the full rate, as [m, factor] blocks.
    frac = np.arange(factor, dtype=np.float32) / np.float32(factor)
    up = wet[:, :m, None] + (wet[:, 1:m + 1, None] - wet[:, :m, None]) * frac
    out = np.zeros((n, 2), dtype=np.float32)
    out[:m * factor] = up.reshape(2, m * factor).T
    return out


def _plan(tags: Sequence[str]) -> tuple[list[str], list[str], tuple[float, float], float]:
    """Instruments, drum styles, tempo range and reverb time for a tag set."""
    unknown = sorted(set(tags) - set(TAGS))
    if unknown:
        raise ValueError(f"unknown tags {unknown}; render_track knows {list(TAGS)}")
    genres = [t for t in tags if t in GENRES]
    instruments: list[str] = []
    drums: list[str] = []
    if genres:
        low, high = TAG_RECIPES[genres[0]].tempo_bpm
        for genre in genres[1:]:
            other = TAG_RECIPES[genre].tempo_bpm
            if max(low, other[0]) <= min(high, other[1]):
                low, high = max(low, other[0]), min(high, other[1])
        t60_s = max(TAG_RECIPES[g].reverb_t60_s for g in genres)
    else:
        (low, high), t60_s = NO_GENRE_TEMPO_BPM, 1.0
        instruments += NO_GENRE_INSTRUMENTS
    for genre in genres:
        recipe = TAG_RECIPES[genre]
        instruments += [i for i in recipe.instruments if i not in instruments]
        if recipe.drums:
            drums.append(recipe.drums)
    if "rap" in tags:
        instruments.append("female_rap_voice" if "female" in tags and "male" not in tags else "rap_voice")
    else:
        instruments += [f"voice_{g}" for g in ("female", "male") if g in tags]
    for decade in DECADES:
        if decade in tags:
            instruments += [i for i in TAG_RECIPES[decade].instruments if i not in instruments]
            if not drums:  # a decade sound needs a beat: the plain pop kit carries it
                drums.append("pop")
            drums.append(TAG_RECIPES[decade].drums)
    if drums:
        instruments.insert(0, "drums")
    return instruments, drums, (float(low), float(high)), t60_s


def render_track(tags: Sequence[str], seed: int, duration_s: float = 30.0, sample_rate: int = 44100) -> np.ndarray:
    """Render a track whose content matches `tags` (see `TAG_RECIPES`).

    Args:
        tags: clean tag names from `TAGS`, e.g. ["rock", "male"]; the first genre sets the tempo
            range when genres disagree. "instrumental" (or no vocal tag) means no voice.
        seed: the track's seed; the same (tags, seed, duration_s, sample_rate) gives identical audio.
        duration_s: length in seconds.
        sample_rate: Hz.

    Returns:
        float32 [round(duration_s * sample_rate), 2], stereo, in [-1, 1], never silent for more than
        a few milliseconds (a faint tape hiss lies under the music).

    Raises:
        ValueError: an unknown tag, or a non-positive duration or sample rate.
    """
    if duration_s <= 0 or sample_rate <= 0:
        raise ValueError(f"duration_s and sample_rate must be positive, got {duration_s} and {sample_rate}")
    tags = list(dict.fromkeys(tags))
    instruments, drum_styles, (low_bpm, high_bpm), t60_s = _plan(tags)
    seeds = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x6F72706865]).spawn(len(instruments) + 2)
    rng = np.random.default_rng(seeds[0])
    n_samples = int(round(duration_s * sample_rate))
    slow = any(g in tags for g in ("classical", "ambient"))
    mode = "minor" if rng.random() < (0.7 if any(g in tags for g in ("metal", "hip hop")) else 0.4) else "major"
    progressions = JAZZ_PROGRESSIONS if "jazz" in tags else PROGRESSIONS[mode]
    if "jazz" in tags:
        mode = "major"
    base = Song(sample_rate=sample_rate, n_samples=n_samples, bpm=float(rng.uniform(low_bpm, high_bpm)),
                tonic=int(rng.integers(0, 12)), scale=MAJOR if mode == "major" else MINOR,
                progression=progressions[int(rng.integers(0, len(progressions)))],
                chord_bars=2 if slow else 1, swing=0.66 if "jazz" in tags else 0.0, rng=rng,
                drum_styles=tuple(drum_styles))
    base_offset_s = float(rng.uniform(0, base.bar_s))  # previews start anywhere in the bar

    def song_for(part_seed: np.random.SeedSequence) -> Song:
        return Song(**{**base.__dict__, "rng": np.random.default_rng(part_seed), "cache": {},
                       "n_samples": n_samples + int(base_offset_s * sample_rate)})

    parts = [(INSTRUMENTS[name].render(song_for(part_seed)), INSTRUMENTS[name])
             for name, part_seed in zip(instruments, seeds[2:])]

    mix = np.zeros((n_samples, 2), dtype=np.float32)
    send = np.zeros(n_samples, dtype=np.float32)
    offset = int(base_offset_s * sample_rate)
    for audio, instrument in parts:
        audio = audio[offset:offset + n_samples]
        rms = float(np.sqrt(np.dot(audio, audio) / n_samples)) + 1e-9
        gain = 0.1 / rms * 10 ** ((instrument.level_db + rng.uniform(-3, 3)) / 20)
        angle = (rng.uniform(-instrument.pan, instrument.pan) + 1) * np.pi / 4
        mix[:, 0] += np.float32(gain * np.cos(angle)) * audio
        mix[:, 1] += np.float32(gain * np.sin(angle)) * audio
        send += np.float32(gain * instrument.reverb_send) * audio
    mix += _reverb(send, sample_rate, t60_s, np.random.default_rng(seeds[1]))
    # Tape hiss 40 dB under the music: a real recording is never digitally silent.
    rms = float(np.sqrt(np.mean(mix ** 2))) + 1e-9
    mix += rng.standard_normal((n_samples, 2), dtype=np.float32) * np.float32(rms * 0.01)
    ramp = np.linspace(0.0, 1.0, min(n_samples // 2, int(0.01 * sample_rate)), dtype=np.float32)[:, None]
    mix[:ramp.shape[0]] *= ramp  # no click at either end
    mix[n_samples - ramp.shape[0]:] *= ramp[::-1]
    mix *= np.float32(rng.uniform(0.5, 0.95) / (float(np.max(np.abs(mix))) + 1e-9))
    return np.clip(mix, -1.0, 1.0, out=mix)


def draw_tags(rng: np.random.Generator) -> list[str]:
    """Draw a realistic clean tag set for one track: a genre (sometimes two), a vocal tag, maybe a decade.

    Genres follow rough Last.fm popularities; classical and ambient are nearly always instrumental,
    hip hop is mostly rap; rock/pop/electronic/dance/metal/hip hop tracks may carry 80s or 90s.

    Returns:
        clean tags in the order genre(s), vocal tag(s), decade.
    """
    weights = {"rock": 0.17, "pop": 0.13, "electronic": 0.11, "dance": 0.08, "hip hop": 0.1, "jazz": 0.09,
               "classical": 0.07, "ambient": 0.07, "metal": 0.08, "folk": 0.1}
    names = list(weights)
    p = np.array([weights[n] for n in names])
    genre = names[int(rng.choice(len(names), p=p / p.sum()))]
    tags = [genre]
    companions = {"electronic": ["dance", "ambient", "pop"], "dance": ["electronic", "pop"], "rock": ["pop", "metal"],
                  "pop": ["rock", "dance", "folk"], "folk": ["pop", "rock"], "metal": ["rock"],
                  "ambient": ["electronic", "classical"], "hip hop": ["electronic"], "jazz": [], "classical": []}
    if companions[genre] and rng.random() < 0.2:
        tags.append(str(rng.choice(companions[genre])))
    voice_p = {"classical": 0.0, "ambient": 0.1, "jazz": 0.4, "electronic": 0.35, "dance": 0.6}.get(genre, 0.85)
    if genre == "hip hop" and rng.random() < 0.8:
        tags += ["rap", "male" if rng.random() < 0.75 else "female"]
    elif rng.random() < voice_p:
        tags.append("male" if rng.random() < (0.8 if genre == "metal" else 0.5) else "female")
    else:
        tags.append("instrumental")
    if genre in ("rock", "pop", "electronic", "dance", "metal", "hip hop"):
        decade = rng.random()
        if decade < 0.15:
            tags.append("80s")
        elif decade < 0.3:
            tags.append("90s")
    return tags
