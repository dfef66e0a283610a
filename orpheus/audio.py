"""Audio front end shared by preprocessing and tagging: decode, mix to mono, resample, features.

Decoding uses libsndfile (via `soundfile`), which reads mp3, ogg, flac and wav at any sample rate
and channel count; resampling uses soxr. Everything is float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from orpheus.errors import AudioDecodeError, MissingInputError

AUDIO_EXTENSIONS = (".mp3", ".ogg", ".flac", ".wav")


def decode(path: str | Path, *, offset_s: float = 0.0, duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Decode an audio file as it is stored.

    Args:
        path: an mp3/ogg/flac/wav file.
        offset_s: seconds to skip from the start.
        duration_s: seconds to read from the offset; None reads to the end.

    Returns:
        (audio, sample_rate): audio is float32 [n_samples, n_channels] in [-1, 1]; sample_rate in Hz.

    Raises:
        MissingInputError: the file does not exist.
        AudioDecodeError: the file is empty, corrupt or not audio, or holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: audio file not found; check the path")
    try:
        with sf.SoundFile(str(path)) as f:
            sample_rate = f.samplerate
            start = int(round(offset_s * sample_rate))
            if start:
                f.seek(min(start, f.frames) if f.frames > 0 else start)
            frames = -1 if duration_s is None else int(round(duration_s * sample_rate))
            audio = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise AudioDecodeError(f"{path}: cannot decode audio ({_first_line(err)}); the file is empty, corrupt "
                               "or not audio: re-download or remove it") from err
    if audio.shape[0] == 0:
        raise AudioDecodeError(f"{path}: no audio samples; the file is empty or truncated: re-download or remove it")
    return audio, sample_rate


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Mix float32 [n_samples, n_channels] (or [n_samples]) down to float32 [n_samples]."""
    if audio.ndim == 1:
        return audio.astype(np.float32, copy=False)
    return audio.mean(axis=1, dtype=np.float32)


def resample(audio: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Resample float32 [n_samples] from `sample_rate` to `target_rate` Hz with soxr (high quality)."""
    if sample_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, sample_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | Path, sample_rate: int | None = None, *, offset_s: float = 0.0,
               duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Decode, mix to mono and (when `sample_rate` is given) resample.

    Returns:
        (audio, sample_rate): float32 [n_samples] mono in [-1, 1], and its rate in Hz.
    """
    audio, native_rate = decode(path, offset_s=offset_s, duration_s=duration_s)
    mono = to_mono(audio)
    if sample_rate is None:
        return mono, native_rate
    return resample(mono, native_rate, sample_rate), sample_rate


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
