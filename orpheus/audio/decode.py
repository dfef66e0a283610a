"""Audio front end shared by preprocessing and tagging: decode, mix to mono, resample.

Decoding uses libsndfile (via `soundfile`), which reads mp3, ogg, flac and wav at any sample rate
and channel count; where mono is wanted, stereo mp3s are mixed inside the decoder instead
(`orpheus.audio.mp3`: libmpg123, 13% less decoding). Resampling uses soxr. Everything is float32.

Features (log-mel, MFCC) are `orpheus.audio.features`; the record of their settings is `orpheus.audio.settings`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import soundfile as sf
import soxr

from orpheus.audio import mp3
from orpheus.errors import AudioDecodeError, ConfigError, MissingInputError
from orpheus.files import stderr_redirected

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".mp3", ".ogg", ".opus", ".flac", ".wav")
DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError)  # what soundfile raises on a bad file


def decode(path: str | Path, *, offset_s: float = 0.0, duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Decode an audio file as it is stored.

    Args:
        path: an mp3/ogg/opus/flac/wav file.
        offset_s: seconds to skip from the start.
        duration_s: seconds to read from the offset; None reads to the end.

    Returns:
        (audio, sample_rate): audio is float32 [n_samples, n_channels] in [-1, 1]; sample_rate in Hz.

    Raises:
        MissingInputError: the file does not exist.
        AudioDecodeError: the file is empty, corrupt or not audio, or holds no samples.
    """
    return _decode(Path(path), offset_s, duration_s, mono=False)


def _decode(path: Path, offset_s: float, duration_s: float | None, *, mono: bool) -> tuple[np.ndarray, int]:
    """`decode`, or with `mono` its channel mean (`to_mono`), which stereo mp3s get from `mp3.decode_mono`."""
    if not path.is_file():
        raise MissingInputError(f"{path}: audio file not found; check the path")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: empty file (0 bytes); re-download or remove it")
    try:
        with c_notes_logged(path), sf.SoundFile(str(path)) as f:
            sample_rate = f.samplerate
            start = int(round(offset_s * sample_rate))
            if start and f.frames > 0:
                start = min(start, f.frames)
            frames = -1 if duration_s is None else int(round(duration_s * sample_rate))
            audio = None
            if mono and _mixed_in_decoder(f):
                remaining = f.frames - start
                audio = mp3.decode_mono(path, sample_rate, start, remaining if frames < 0 else min(frames, remaining))
            if audio is None:
                if start:
                    f.seek(start)
                audio = f.read(frames, dtype="float32", always_2d=True)
                if mono:
                    audio = to_mono(audio)
    except DECODE_ERRORS as err:
        raise decode_error(path, err) from err
    if audio.shape[0] == 0:
        raise AudioDecodeError(f"{path}: no audio samples; the file is empty or truncated: re-download or remove it")
    return audio, sample_rate


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Mix float32 [n_samples, n_channels] (or [n_samples]) down to float32 [n_samples].

    One channel comes back as a view of `audio`, not a copy.
    """
    if audio.ndim == 1 or audio.shape[1] == 1:
        return (audio if audio.ndim == 1 else audio[:, 0]).astype(np.float32, copy=False)
    # Adding channel columns is ~20x faster than `mean(axis=1)`, whose reduction runs along the
    # short, contiguous channel axis; the first two in one pass (1.0 -> 0.6 ms for 30 s of stereo).
    mono = np.add(audio[:, 0], audio[:, 1], dtype=np.float32)
    for channel in range(2, audio.shape[1]):
        mono += audio[:, channel]
    mono /= np.float32(audio.shape[1])
    return mono


def resample(audio: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Resample float32 [n_samples] from `sample_rate` to `target_rate` Hz with soxr (high quality)."""
    if sample_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, sample_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def _mixed_in_decoder(f: sf.SoundFile) -> bool:
    """Whether this open file's mono comes from `orpheus.audio.mp3` (a stereo mp3 with samples), not soundfile."""
    return f.format == "MP3" and f.channels == 2 and f.frames > 0


def load_audio(path: str | Path, sample_rate: int | None = None, *, offset_s: float = 0.0,
               duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Decode, mix to mono (stereo mp3s inside the decoder: `orpheus.audio.mp3`) and, when `sample_rate`
    is given, resample.

    Returns:
        (audio, sample_rate): float32 [n_samples] mono in [-1, 1], and its rate in Hz.
    """
    mono, native_rate = _decode(Path(path), offset_s, duration_s, mono=True)
    if sample_rate is None:
        return mono, native_rate
    return resample(mono, native_rate, sample_rate), sample_rate


def stream_mono(path: str | Path, sample_rate: int | None = None, block_s: float = 60.0) -> Iterator[np.ndarray]:
    """Decode, mix to mono and resample a file block by block, in memory bounded by `block_s`.

    For hour-long recordings: at most about `block_s` seconds of decoded audio are held at once.
    The concatenated blocks equal `load_audio(path, sample_rate)[0]` up to soxr's streaming
    round-off (below 1e-5 on music).

    Args:
        path: an mp3/ogg/opus/flac/wav file.
        sample_rate: output rate in Hz; None keeps the file's own rate.
        block_s: seconds of input decoded per block (> 0).

    Yields:
        float32 [n_samples_in_block] mono blocks in [-1, 1]; blocks may be empty at the end.

    Raises:
        MissingInputError: the file does not exist.
        AudioDecodeError: the file cannot be decoded or holds no samples.
    """
    path = Path(path)
    if block_s <= 0:
        raise ConfigError(f"block_s must be positive, got {block_s}")
    if not path.is_file():
        raise MissingInputError(f"{path}: audio file not found; check the path")
    try:
        with c_notes_logged(path):
            opened = sf.SoundFile(str(path))
        with opened as f:
            native_rate = f.samplerate
            stream = None
            if sample_rate is not None and sample_rate != native_rate:
                stream = soxr.ResampleStream(native_rate, sample_rate, 1, dtype="float32", quality="HQ")
            block_frames = max(1, int(round(block_s * native_rate)))
            mp3_decoder = None  # stereo mp3s: mixed in the decoder, as `load_audio` does
            if _mixed_in_decoder(f):
                mp3_decoder = mp3.MonoDecoder.open(path, native_rate)
            n_read = 0
            try:
                while True:
                    mono = None if mp3_decoder is None else mp3_decoder.read(block_frames)
                    if mono is None:
                        if mp3_decoder is not None:  # it failed mid-way: soundfile goes on from here
                            mp3_decoder.close()
                            mp3_decoder = None
                            f.seek(n_read)
                        with c_notes_logged(path):
                            mono = to_mono(f.read(block_frames, dtype="float32", always_2d=True))
                    last = mono.shape[0] < block_frames
                    n_read += mono.shape[0]
                    if stream is not None:
                        mono = stream.resample_chunk(mono, last=last).astype(np.float32, copy=False)
                    if last:
                        if n_read == 0:
                            raise AudioDecodeError(f"{path}: no audio samples; the file is empty or truncated: "
                                                   "re-download or remove it")
                        yield mono
                        return
                    yield mono
            finally:
                if mp3_decoder is not None:
                    mp3_decoder.close()
    except DECODE_ERRORS as err:
        raise decode_error(path, err) from err


_scratch: dict[int, BinaryIO] = {}  # process id -> the file `c_notes_logged` points stderr at


@contextlib.contextmanager
def c_notes_logged(path: str | Path) -> Iterator[None]:
    """Log at DEBUG (shown with `--verbose`) what the C decoders print on stderr in the block instead of printing
    it: libsndfile's bundled libmpg123 writes "Note: Illegal Audio-MPEG-Header ... Trying to resync" for every
    damaged mp3 (the MSD's previews hold thousands). File descriptor 2 points at a scratch file of this process for
    the block (a few system calls, a few microseconds); where it cannot, nothing changes."""
    with contextlib.ExitStack() as stack:
        try:
            scratch = _scratch.get(os.getpid())
            if scratch is None:  # one per process: a forked worker must not share its parent's
                scratch = _scratch[os.getpid()] = tempfile.TemporaryFile()
            stack.callback(_log_notes, scratch, path)  # once stderr is back: an ExitStack unwinds last in, first out
            stack.enter_context(stderr_redirected(scratch.fileno()))
        except (OSError, ValueError):  # no stderr, or no room for a scratch file
            pass
        yield


def _log_notes(scratch: BinaryIO, path: str | Path) -> None:
    """Log and empty what `c_notes_logged`'s scratch file caught."""
    size = os.fstat(scratch.fileno()).st_size
    if size:
        for line in os.pread(scratch.fileno(), min(size, 1 << 16), 0).decode("utf-8", "replace").splitlines():
            log.debug("%s: %s", path, line.strip())
        os.ftruncate(scratch.fileno(), 0)
        os.lseek(scratch.fileno(), 0, os.SEEK_SET)


def decode_error(path: str | Path, err: Exception) -> AudioDecodeError:
    """The one-line `AudioDecodeError` for a file libsndfile could not decode (`err` one of `DECODE_ERRORS`)."""
    # libsndfile says "does not exist or is not a regular file" for any file it cannot recognise
    detail = "not a recognised audio format" if "does not exist" in str(err) else _first_line(err)
    return AudioDecodeError(f"{path}: cannot decode audio ({detail}); the file is corrupt or not audio: "
                            "re-download or remove it")


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
