"""Tagging's input side: which files, their features (in worker processes) and what is odd about them.

Workers import only numpy, soundfile and soxr (this module never imports TensorFlow), so the pool
starts fast and stays small. `decode_features` returns one file's features with the warnings a user
should see beside its tags (near-silent, shorter than a window, shorter than its header says);
`stream_features` does the same block by block for long files. `TaggingEngine` (orpheus.tagging.tagger) consumes both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from orpheus.audio import decode as audio_io
from orpheus.audio.settings import FeatureSettings
from orpheus.audio.features import compute_features
from orpheus.errors import MissingInputError, OrpheusError
from orpheus.files import first_paths, walk_files

STREAM_THRESHOLD_S = 600.0  # files longer than this are streamed in blocks, in the main process
STREAM_BLOCK_S = 60.0       # seconds of audio decoded per block when streaming
SILENT_RMS_DBFS = -60.0     # a track whose RMS is below this is (near-)silent: its tags mean nothing
TRUNCATION_TOLERANCE_S = 1.0  # decoded audio this much shorter than the header's length is truncated


def list_audio_files(path: str | Path) -> list[Path]:
    """One audio file, or every mp3/ogg/opus/flac/wav under a folder (recursive), sorted by path.

    The folder walk is `orpheus.files.walk_files`: links to folders are followed, never into a folder
    already walked, and a file reached by two paths is tagged once (under its first path).

    Raises:
        MissingInputError: `path` does not exist, or the folder holds no audio file.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MissingInputError(f"{path}: no such file or folder; --mp3 takes an audio file or a folder")
    files = first_paths([(p, real) for p, real in walk_files(path) if p.suffix.lower() in audio_io.AUDIO_EXTENSIONS])
    if not files:
        raise MissingInputError(f"{path}: no {'/'.join(e[1:] for e in audio_io.AUDIO_EXTENSIONS)} files in "
                                "this folder or below; check the path")
    return files


@dataclass
class AudioStats:
    """Running length and energy of a decoded signal, enough to warn about silence and truncation."""
    sample_rate: int
    n_samples: int = 0
    sum_squares: float = 0.0

    def add(self, samples: np.ndarray) -> None:
        self.n_samples += samples.shape[0]
        self.sum_squares += float(np.dot(samples.astype(np.float64), samples.astype(np.float64)))

    @property
    def seconds(self) -> float:
        return self.n_samples / self.sample_rate

    @property
    def rms_dbfs(self) -> float:
        rms = np.sqrt(self.sum_squares / self.n_samples) if self.n_samples else 0.0
        return 20 * np.log10(rms) if rms > 0 else -np.inf


def input_warnings(stats: AudioStats, *, window_s: float, header_s: float | None = None) -> list[str]:
    """What is odd about a decoded input, as short sentences (empty when nothing is).

    Args:
        stats: the decoded signal's length and energy.
        window_s: the model's window; a shorter input is zero-padded to one window.
        header_s: the length the file's header announces (None for a recording).
    """
    warnings = []
    if stats.rms_dbfs < SILENT_RMS_DBFS:
        level = "digital silence" if stats.sum_squares == 0 else f"RMS {stats.rms_dbfs:.0f} dBFS"
        warnings.append(f"near-silent ({level}, below {SILENT_RMS_DBFS:.0f} dBFS): the tags describe silence")
    if stats.seconds < window_s:
        warnings.append(f"very short ({stats.seconds:.2f} s, less than one {window_s:.2f} s window): "
                        "zero-padded, the tags are unreliable")
    if header_s is not None and stats.seconds < header_s - max(TRUNCATION_TOLERANCE_S, 0.02 * header_s):
        warnings.append(f"truncated: decoded {stats.seconds:.1f} s of the {header_s:.1f} s its header announces; "
                        "re-download or re-encode it")
    return warnings


@dataclass
class Decoded:
    """What a worker returns for one file: its features and warnings, or the error that stopped it."""
    file: str
    features: np.ndarray | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def decode_features(task: tuple[str, FeatureSettings, float]) -> Decoded:
    """Worker: decode, resample and compute features of one file; errors are returned, not raised.

    `task` is (path, feature settings, the model's window in seconds).
    """
    path, settings, window_s = task
    try:
        samples, _ = audio_io.load_audio(path, settings.sample_rate)
        stats = AudioStats(settings.sample_rate)
        stats.add(samples)
        return Decoded(path, features=compute_features(samples, settings),
                       warnings=input_warnings(stats, window_s=window_s, header_s=duration_s(path) or None))
    except OrpheusError as err:
        return Decoded(path, error=error_naming(path, err))


def error_naming(path: str, err: Exception) -> str:
    """The error message, prefixed with the file when it does not already name it."""
    return str(err) if str(path) in str(err) else f"{path}: {err}"


def stream_features(path: str | Path, settings: FeatureSettings, block_s: float = STREAM_BLOCK_S,
                    stats: AudioStats | None = None) -> Iterator[np.ndarray]:
    """Features of a long file, block by block, equal to `settings.compute` on the whole file.

    Each block of decoded audio is extended by `settings.context` samples of the neighbouring audio,
    its features computed, and only the frames whose full support lies inside the extended block
    are kept, so the concatenation of the yielded blocks equals the whole-file features (frame t is
    centred on sample t * hop) for frame-wise features (waveform, the musicnn log10 preset). With
    the "db" preset and MFCC, the 80 dB floor is taken per block instead of per track, which only
    changes bins more than 80 dB below the block's loudest. At most about `block_s` seconds of
    audio and features are held. `stats`, when given, accumulates the decoded signal's length and energy.

    Yields:
        float32 [n_steps_in_block(, n_bins)], consecutive along time.
    """
    hop, context = settings.hop, settings.context
    margin = -(-context // hop) * hop  # context rounded up to whole hops
    buffer = np.zeros(0, np.float32)
    buffer_start = 0   # global sample index of buffer[0], a multiple of hop
    next_frame = 0     # first global frame not yet yielded
    for block in audio_io.stream_mono(path, settings.sample_rate, block_s):
        if stats is not None:
            stats.add(block)
        buffer = np.concatenate([buffer, block])
        end = buffer_start + buffer.shape[0]
        last_exact = (end - margin) // hop  # frames < last_exact have their right context in the buffer
        if last_exact - next_frame < max(1, int(block_s * settings.sample_rate / hop) // 2):
            continue
        feats = compute_features(buffer, settings)
        first = next_frame - buffer_start // hop
        yield feats[first:last_exact - buffer_start // hop]
        next_frame = last_exact
        keep_from = max(buffer_start, (next_frame * hop - margin) // hop * hop)
        buffer = buffer[keep_from - buffer_start:]
        buffer_start = keep_from
    if buffer.shape[0]:
        feats = compute_features(buffer, settings)
        tail = feats[next_frame - buffer_start // hop:]
        if tail.shape[0]:
            yield tail


def duration_s(path: str | Path) -> float:
    """Length of an audio file in seconds from its header, or 0 when the header cannot be read."""
    try:
        with audio_io.c_notes_logged(path):
            info = sf.info(str(path))
        return info.frames / info.samplerate if info.samplerate else 0.0
    except audio_io.DECODE_ERRORS:
        return 0.0  # the decoder reports the real error later, per file
