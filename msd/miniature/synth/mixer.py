"""The instruments table and the mixer: `render_track(tags, seed)` plans the band for a tag set, renders
each part, mixes them with pan, levels and a room reverb; `draw_tags` draws a realistic tag set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.fft

from msd.miniature.synth.drums import render_drums
from msd.miniature.synth.pitched import (
    render_acoustic_guitar,
    render_ambient_pad,
    render_bass,
    render_bells,
    render_heavy_guitar,
    render_jazz_piano,
    render_pad,
    render_piano,
    render_poly_synth,
    render_power_chords,
    render_rave_stab,
    render_saw_lead,
    render_strings,
    render_sub_bass,
    render_synth_bass,
    render_walking_bass,
)
from msd.miniature.synth.song import (
    DECADES,
    GENRES,
    JAZZ_PROGRESSIONS,
    MAJOR,
    MINOR,
    NO_GENRE_INSTRUMENTS,
    NO_GENRE_TEMPO_BPM,
    PROGRESSIONS,
    TAG_RECIPES,
    TAGS,
    Song,
)
from msd.miniature.synth.voices import render_rap, render_voice


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
