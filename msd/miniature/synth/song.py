"""The tag table and the song: what each tag sounds like (`TAG_RECIPES`), scales, progressions, formants,
and `Song`, the tempo, key, harmony and bar grid every part of a track follows.

Part of the synthesiser; `msd.miniature.music_synth` is its front door and documents the tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
