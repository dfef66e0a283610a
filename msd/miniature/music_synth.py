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

The synthesiser lives in `msd/miniature/synth/`, one module per seam: `song` (the tag table and the
song grid), `signals` (oscillators, envelopes, filters), `drums`, `pitched` (pitched instruments),
`voices` (formant voices) and `mixer` (the instruments table, `render_track`, `draw_tags`). This module
is its front door: it re-exports their public names.
"""

from __future__ import annotations

from msd.miniature.synth.song import (  # noqa: F401
    GENRES, VOCALS, DECADES, TAGS, STEPS_PER_BAR, TagRecipe, TAG_RECIPES, NO_GENRE_INSTRUMENTS, NO_GENRE_TEMPO_BPM,
    MAJOR, MINOR, PROGRESSIONS, JAZZ_PROGRESSIONS, VOWEL_FORMANTS_HZ, FORMANT_LEVELS, FORMANT_BANDWIDTHS_HZ, Song,
    midi_hz
)
from msd.miniature.synth.drums import (  # noqa: F401
    EIGHTHS, SIXTEENTHS, QUARTERS, OFFBEATS, DRUM_STYLES, DRUM_LEVELS, render_drums
)
from msd.miniature.synth.pitched import (  # noqa: F401
    render_piano, render_jazz_piano, render_bass, render_walking_bass, render_sub_bass, render_synth_bass,
    render_pad, render_saw_lead, render_poly_synth, render_rave_stab, render_power_chords, render_heavy_guitar,
    render_strings, render_ambient_pad, render_bells, render_acoustic_guitar
)
from msd.miniature.synth.voices import (  # noqa: F401
    render_voice, render_rap
)
from msd.miniature.synth.mixer import (  # noqa: F401
    Instrument, INSTRUMENTS, render_track, draw_tags
)
