"""Generated music that stands in for the real clips of ../shared/audio, so every real-clip test has a twin.

`music_dir` (a parametrised fixture in conftest.py) gives each test two folders in turn: the
generated one (always present) and the real clips (skipped when ../shared/audio is absent). The
generated folder holds tag-matched music rendered by `msd.miniature.music_synth`, 10 s like the real
clips, encoded by libsndfile (soundfile) under the file names the tests address, so one test body
runs on both. Every generated file is deterministic (seeded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

CLIP_S = 10.0
CLIP_RATE = 22050
# file name the tests use -> tags whose audible signature music_synth renders
GENERATED_CLIPS: dict[str, tuple[str, ...]] = {
    "asc_frontiers.ogg": ("electronic", "dance", "instrumental"),
    "fof_armygeddon_mix.ogg": ("metal", "rock", "male"),
    "render_mma_basicrock.ogg": ("rock", "80s", "male"),
    "gen_ambient.ogg": ("ambient", "instrumental"),
    "gen_classical.ogg": ("classical", "instrumental"),
    "gen_folk.ogg": ("folk", "female"),
    "gen_hip_hop.ogg": ("hip hop", "rap"),
    "gen_jazz.ogg": ("jazz", "instrumental"),
    "gen_pop.ogg": ("pop", "female", "90s"),
}


def render_clip(tags: tuple[str, ...], seed: int, duration_s: float = CLIP_S, sample_rate: int = CLIP_RATE
                ) -> np.ndarray:
    """float32 [n_samples, 2] stereo music matching `tags`, in [-1, 1]."""
    from msd.miniature.music_synth import render_track
    return render_track(list(tags), seed=seed, duration_s=duration_s, sample_rate=sample_rate)


def write_generated_clips(folder: Path) -> Path:
    """Write every clip of `GENERATED_CLIPS` into `folder` (ogg Vorbis, 22.05 kHz stereo); returns `folder`."""
    import soundfile as sf
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (name, tags) in enumerate(sorted(GENERATED_CLIPS.items())):
        sf.write(str(folder / name), render_clip(tags, seed), CLIP_RATE)
    return folder


def write_clip(path: Path, tags: tuple[str, ...] = ("rock",), *, seed: int = 0, duration_s: float = 4.0,
               sample_rate: int = CLIP_RATE, subtype: str | None = None) -> Path:
    """One generated clip at `path` in the format its suffix names (mp3/ogg/opus/flac/wav)."""
    import soundfile as sf
    kwargs = {}
    if path.suffix == ".opus":
        kwargs = {"format": "OGG", "subtype": "OPUS"}
        sample_rate = 48000
    elif subtype is not None:
        kwargs = {"subtype": subtype}
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), render_clip(tags, seed, duration_s, sample_rate), sample_rate, **kwargs)
    return path


def plant_track(path: Path, fault: str | None, rng: np.random.Generator, write_audio: Callable[[Path], None]) -> None:
    """One track of a miniature dataset: an empty file (`fault` "empty"), 2048 random bytes ("corrupt"), no file
    (any other fault: a missing track), or `write_audio(path)` (no fault). Its folder is created in every case."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fault == "empty":
        path.write_bytes(b"")
    elif fault == "corrupt":
        path.write_bytes(rng.bytes(2048))
    elif not fault:
        write_audio(path)


def longest_silence_s(audio: np.ndarray, sample_rate: int) -> float:
    """Longest run of 2048/512 frames of `audio` [samples, channels] more than 60 dB under its loudest frame, in s."""
    mono = audio.mean(axis=1)
    frames = np.lib.stride_tricks.sliding_window_view(mono, 2048)[::512]
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    silent = np.r_[0, (db < db.max() - 60).astype(int), 0]
    edges = np.flatnonzero(np.diff(silent))
    return float(np.max(edges[1::2] - edges[::2]) * 512 / sample_rate) if edges.size else 0.0
