"""Tag audio files with a run directory's model: files -> features -> windows -> batched inference -> scores.

Input: a run directory (`run.json` + `model.keras`, see `orpheus.formats.rundir`) and audio files
(mp3/ogg/opus/flac/wav) or a recorded signal. Output: one `TrackTags` per file, in the sorted file order:
the track's score per tag (mean, or max, over consecutive windows covering the whole track, the last
window aligned to the end as `orpheus.audio.windows` does), the per-window probabilities (the taggram),
when asked the "embedding" layer's output per window, and warnings about odd input.

Seams: the input side (file listing, features in worker processes, input warnings, streaming) is
`orpheus.tagging.inputs`; the output side (ranked tags, JSON records, taggram plots) is `orpheus.tagging.outputs`;
the model backends (`--precision exact|fast`) are `orpheus.tagging.backends`. This module batches windows
across tracks and puts the results back together. `TaggingEngine` is the machinery behind the Python API's
`orpheus.Tagger` (which adds model names, in-memory audio and thresholds) and the predict and test commands.

Throughput and memory: decoding and feature extraction run in a process pool (`orpheus.parallel`,
workers import no TensorFlow), overlapped with batched inference across tracks in the main process;
the model is loaded once. Peak memory is TensorFlow itself plus the activations of one batch, so the
default batch (`BATCH_SIZES[precision]` windows) is chosen for memory as well as speed. Files longer than
`STREAM_THRESHOLD_S` are streamed block by block so memory stays bounded whatever their length.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from orpheus.audio.windows import normalise_windows_np
from orpheus.errors import ConfigError, DataFormatError, OrpheusError
from orpheus.audio.features import compute_features
from orpheus.tagging.backends import PRECISIONS, make_backend
from orpheus.parallel import parallel_map
from orpheus.formats.rundir import load_model, read_run_info
from orpheus.tagging.inputs import (
    STREAM_BLOCK_S,
    STREAM_THRESHOLD_S,
    AudioStats,
    decode_features,
    duration_s,
    error_naming,
    input_warnings,
    stream_features,
)

log = logging.getLogger(__name__)

AGGREGATES = ("mean", "max")
# Windows per model call, by what runs the model, chosen for memory as well as speed (MSD_musicnn, 2 cores).
# TensorFlow: 64 windows peak at 2.2 GB RSS for up to 20% more speed than 8, which stay under 1 GB with
# TensorFlow (0.70 GB) loaded. OpenVINO (no TensorFlow, about 0.45 GB in all): bf16 at 16 windows costs
# 11.3 CPU ms a window against 13.2 at 8; more gain nothing.
BATCH_SIZES = {"tensorflow": 8, "openvino": 16}
DEFAULT_BATCH_SIZE = BATCH_SIZES["tensorflow"]
MAX_IN_FLIGHT_PER_JOB = 2  # decoded files waiting for the model, per worker process
# Decoding workers run at the lowest priority: the model's threads keep both cores and decoding fills their
# gaps (MSD_musicnn, --jobs 2 on 2 cores: fast 104 -> 85 ms a track, exact 150 -> 124 ms at nice 19).
DECODER_NICE = 19


# ---------------------------------------------------------------- model side

@dataclass
class TrackTags:
    """Tagging result of one file (or recording).

    scores:         float32 [n_tags] aggregated probability per tag, in the model's tag order.
    window_scores:  float32 [n_windows, n_tags] per-window probabilities (the taggram).
    window_start_s: float64 [n_windows] start of each window in seconds.
    embeddings:     float32 [n_windows, embedding_dim] or None when not asked.
    error:          why the file could not be tagged (then the arrays are None).
    warnings:       what is odd about the input (near-silent, very short, truncated); empty when fine.
    """
    file: str
    scores: np.ndarray | None = None
    window_scores: np.ndarray | None = None
    window_start_s: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    result: TrackTags
    n_windows: int = 0
    closed: bool = False
    probabilities: list = field(default_factory=list)
    embeddings: list = field(default_factory=list)
    starts: list = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.closed and sum(p.shape[0] for p in self.probabilities) == self.n_windows


class TaggingEngine:
    """A loaded model plus the settings to turn audio into its windows.

    Args:
        run_dir: a run directory (`orpheus.formats.rundir`).
        window_s: seconds per window; default the run's `window_s`. Other lengths need a model whose
            time axis is not fixed.
        hop_s: seconds between window starts; default `window_s` (consecutive windows).
        aggregate: "mean" or "max" over a track's windows.
        batch_size: windows per model call; the default (`BATCH_SIZES` of the engine that runs the model)
            keeps peak memory under 1 GB.
        embeddings: also return the "embedding" layer's output per window.
        precision: "exact" (float32) or "fast" (int8/bf16, chosen per CPU); see `orpheus.tagging.backends`.
        engine: "auto" (OpenVINO where installed and checked against TensorFlow, else TensorFlow) or
            "tensorflow" (the Keras model itself).
        free_memory: where TensorFlow runs the model, make glibc hand freed batch memory back to the OS at once
            (`orpheus.tagging.backends.return_freed_memory`: a setting of the whole process, which the tagging
            commands choose for long runs).
    """

    def __init__(self, run_dir: str | Path, *, window_s: float | None = None, hop_s: float | None = None,
                 aggregate: str = "mean", batch_size: int | None = None, embeddings: bool = False,
                 precision: str = "exact", engine: str = "auto", free_memory: bool = False) -> None:
        if aggregate not in AGGREGATES:
            raise ConfigError(f"--aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
        if precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if batch_size is not None and batch_size <= 0:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        self.run_dir = Path(run_dir)
        self.info = read_run_info(run_dir)
        self.settings = self.info.features
        fps = self.settings.frames_per_second
        self.window_frames = self.info.window_frames if window_s is None else self.settings.frames(window_s)
        self.hop_frames = self.window_frames if hop_s is None else self.settings.frames(hop_s)
        if self.window_frames <= 0 or self.hop_frames <= 0:
            raise ConfigError(f"--window and --hop must be positive, got {window_s} and {hop_s} seconds")
        self.frames_per_second = fps
        self.aggregate = aggregate
        self.embeddings = embeddings
        self.precision = precision
        self._model = None
        backend = make_backend(self.run_dir, precision, embeddings, lambda: self.model, engine, self.window_frames,
                               free_memory=free_memory)
        fixed = backend.input_shape[1]
        if fixed is not None and fixed != self.window_frames:
            raise ConfigError(f"this model takes windows of exactly {fixed} steps ({fixed / fps:.3f} s); "
                              f"--window {window_s} gives {self.window_frames}: drop --window or use a model "
                              "with a free time axis")
        if backend.n_tags != len(self.info.tags):
            raise DataFormatError(f"{run_dir}: model has {backend.n_tags} outputs but run.json lists "
                                  f"{len(self.info.tags)} tags")
        self._infer, self.backend = backend.forward, backend.description
        self._start, self._in_flight = backend.start, backend.in_flight if backend.start else 1
        # the default batch is split over the batches in flight, so their activations stay one batch's memory
        self.batch_size = max(1, BATCH_SIZES[backend.engine] // self._in_flight) if batch_size is None else batch_size
        log.info("model backend: %s", self.backend)

    @property
    def tags(self) -> tuple[str, ...]:
        return self.info.tags

    @property
    def model(self):
        """The Keras model (loaded on first use: the fast backend runs without it, and without TensorFlow)."""
        if self._model is None:
            self._model = load_model(self.run_dir)
        return self._model

    def predict_windows(self, windows: np.ndarray, *, normalised: bool = False
                        ) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the model on windows float32 [n, window_frames(, n_bins)], `batch_size` at a time.

        Windows are normalised here (`orpheus.audio.windows.normalise_windows_np`) unless `normalised`.
        One graph traced for any batch size (`orpheus.tagging.backends`).

        Returns:
            (probabilities float32 [n, n_tags], embeddings float32 [n, dim] or None).
        """
        probs, embeds = [], []
        for start in range(0, windows.shape[0], self.batch_size):
            chunk = windows[start:start + self.batch_size]
            chunk = chunk if normalised else normalise_windows_np(chunk, self.info)
            out = self._infer(np.asarray(chunk, np.float32))
            probs.append(out[0])
            if self.embeddings:
                embeds.append(out[1].reshape(chunk.shape[0], -1))
        return (np.concatenate(probs).astype(np.float32),
                np.concatenate(embeds).astype(np.float32) if self.embeddings else None)

    def _start_windows(self, windows: np.ndarray) -> Callable[[], tuple[np.ndarray, np.ndarray | None]]:
        """Start the model on one batch of windows (normalised here) and return a wait for what
        `predict_windows` returns; the backend runs it while this thread prepares the next batch."""
        if self._start is None:  # TensorFlow: run it now
            result = self.predict_windows(windows)
            return lambda: result
        wait = self._start(np.asarray(normalise_windows_np(windows, self.info), np.float32))

        def outputs() -> tuple[np.ndarray, np.ndarray | None]:
            out = wait()
            embeds = out[1].reshape(windows.shape[0], -1).astype(np.float32) if self.embeddings else None
            return out[0].astype(np.float32), embeds
        return outputs

    # ---- tagging

    @property
    def window_s(self) -> float:
        return self.window_frames / self.frames_per_second

    def tag_features(self, name: str, features: np.ndarray, *, warnings: Sequence[str] = ()) -> TrackTags:
        """Tag one track given its whole features float32 [n_steps(, n_bins)]."""
        return next(self._tag_stream(iter([(name, iter([features]), None, list(warnings))])))

    def tag_audio(self, name: str, samples: np.ndarray) -> TrackTags:
        """Tag float32 [n_samples] mono audio already at the model's sample rate (e.g. a recording).

        The result warns when the audio is near-silent or shorter than one window.
        """
        samples = np.asarray(samples, np.float32)
        stats = AudioStats(self.settings.sample_rate)
        stats.add(samples)
        return self.tag_features(name, compute_features(samples, self.settings),
                                 warnings=input_warnings(stats, window_s=self.window_s))

    def tag_files(self, files: Sequence[str | Path], *, jobs: int = 1, quiet: bool = False,
                  stream_threshold_s: float = STREAM_THRESHOLD_S, block_s: float = STREAM_BLOCK_S
                  ) -> Iterator[TrackTags]:
        """Tag files in order: features in `jobs` worker processes, overlapped with batched inference.

        Files longer than `stream_threshold_s` are streamed in `block_s` blocks in this process.
        Unreadable files come back as a `TrackTags` with `error` set; the others are still tagged.
        Odd ones (near-silent, shorter than a window, shorter than their header says) carry `warnings`.
        """
        files = [str(f) for f in files]
        headers = {f: duration_s(f) for f in files}
        long_files = {f for f in files if headers[f] > stream_threshold_s}
        pooled = [(f, self.settings, self.window_s) for f in files if f not in long_files]
        decoded = parallel_map(decode_features, pooled, jobs=jobs, desc="decoding", quiet=True,
                               max_pending=MAX_IN_FLIGHT_PER_JOB * max(1, jobs), worker_nice=DECODER_NICE)

        def sources() -> Iterator[tuple[str, Iterator[np.ndarray] | None, str | None, list[str]]]:
            for f in files:
                if f in long_files:
                    log.info("%s: long file (%.0f s), streaming in %.0f s blocks", f, headers[f], block_s)
                    yield f, self._streamed(f, headers[f], block_s, warnings := []), None, warnings
                else:
                    item = next(decoded)
                    yield (item.file, (iter([item.features]) if item.error is None else None), item.error,
                           item.warnings)

        bar = tqdm(total=len(files), desc="tagging", unit="file", disable=quiet, dynamic_ncols=True)
        try:
            for result in self._tag_stream(sources()):
                bar.update()
                yield result
        finally:
            bar.close()

    def _streamed(self, path: str, header_s: float, block_s: float, warnings: list[str]) -> Iterator[np.ndarray]:
        """`stream_features` of a long file; appends the input's warnings to `warnings` once it is read."""
        stats = AudioStats(self.settings.sample_rate)
        yield from stream_features(path, self.settings, block_s, stats)
        warnings.extend(input_warnings(stats, window_s=self.window_s, header_s=header_s))

    def _tag_stream(self, sources: Iterable[tuple[str, Iterator[np.ndarray] | None, str | None, list[str]]]
                    ) -> Iterator[TrackTags]:
        """Batch windows across tracks; yield each track's result, in order, once all its windows ran.

        Batches are exactly `batch_size` windows (the last may be smaller). Where the backend can start a
        batch in the background (OpenVINO), up to `in_flight` batches run while this thread reads and cuts
        the next tracks, so a result comes out a batch later than it would synchronously.
        Each source is (name, iterator of consecutive feature blocks, error, warnings: a list that
        may be filled while the blocks are read). Windows of a streamed
        track are cut from a rolling frame buffer, at the same starts as `orpheus.audio.windows.window_starts`
        on the whole track (last window aligned to the end).
        """
        queue: deque[_Pending] = deque()
        batch: list[tuple[_Pending, np.ndarray, np.ndarray]] = []
        n_batched = 0
        running: deque[tuple[Callable[[], tuple[np.ndarray, np.ndarray | None]], list]] = deque()

        def collect(at_most: int) -> None:
            """Wait for the oldest batches until at most `at_most` run; hand their outputs to their tracks."""
            while len(running) > at_most:
                wait, entries = running.popleft()
                probs, embeds = wait()
                offset = 0
                for pending, w, starts in entries:
                    n = w.shape[0]
                    if pending.result.error is None:  # a track that failed after this batch left is not tagged
                        pending.probabilities.append(probs[offset:offset + n])
                        pending.starts.append(starts)
                        if embeds is not None:
                            pending.embeddings.append(embeds[offset:offset + n])
                    offset += n

        def flush() -> None:
            nonlocal batch, n_batched
            if not batch:
                return
            collect(self._in_flight - 1)
            running.append((self._start_windows(np.concatenate([w for _, w, _ in batch])), batch))
            batch, n_batched = [], 0

        def add(pending: _Pending, windows: np.ndarray, starts: np.ndarray) -> None:
            """Batch `windows`, `batch_size` to a model call (a track's windows may span two calls)."""
            nonlocal n_batched
            pending.n_windows += windows.shape[0]
            while windows.shape[0]:
                room = self.batch_size - n_batched
                batch.append((pending, windows[:room], starts[:room]))
                n_batched += min(room, windows.shape[0])
                windows, starts = windows[room:], starts[room:]
                if n_batched >= self.batch_size:
                    flush()

        def ready() -> Iterator[TrackTags]:
            while queue and queue[0].done:
                yield self._finish(queue.popleft())

        for name, blocks, error, warnings in sources:
            pending = _Pending(TrackTags(file=name, error=error, warnings=warnings))
            queue.append(pending)
            if blocks is not None:
                try:
                    for windows, starts in windows_from_blocks(blocks, self.window_frames, self.hop_frames):
                        add(pending, windows, starts)
                        yield from ready()
                except OrpheusError as err:
                    pending.result.error = error_naming(name, err)
            pending.closed = True
            if pending.result.error is not None or pending.n_windows == 0:
                # drop any windows of a file that failed midway: it is reported, not half-tagged
                batch = [b for b in batch if b[0] is not pending]
                n_batched = sum(b[1].shape[0] for b in batch)
                pending.n_windows, pending.probabilities = 0, []
                pending.result.error = pending.result.error or f"{name}: no audio to tag"
            yield from ready()
        flush()
        collect(0)
        yield from ready()

    def _finish(self, pending: _Pending) -> TrackTags:
        result = pending.result
        if result.error is not None:
            return result
        probs = np.concatenate(pending.probabilities)
        result.window_scores = probs
        result.window_start_s = np.concatenate(pending.starts) / self.frames_per_second
        result.scores = (probs.mean(axis=0) if self.aggregate == "mean" else probs.max(axis=0)).astype(np.float32)
        if self.embeddings:
            result.embeddings = np.concatenate(pending.embeddings)
        return result


def windows_from_blocks(blocks: Iterable[np.ndarray], width: int, hop: int
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Cut windows from consecutive feature blocks with a rolling buffer, as `cut_windows` would whole.

    The starts are those of `orpheus.audio.windows.window_starts` on the whole track: every `hop` frames,
    plus a last window aligned to the end; a track shorter than `width` is zero-padded to one window.
    Only about `width + block` frames are held at once.

    Args:
        blocks: float32 [n_steps_in_block(, n_bins)] blocks, consecutive along time.
        width, hop: window length and hop in steps.

    Yields:
        (windows float32 [n, width(, n_bins)], start steps int64 [n]).
    """
    buffer: np.ndarray | None = None
    buffer_start = 0   # global frame index of buffer[0]
    next_start = 0     # next window start (global frame), a multiple of hop
    last_emitted = -1
    for block in blocks:
        buffer = block if buffer is None else np.concatenate([buffer, block])
        end = buffer_start + buffer.shape[0]
        starts = np.arange(next_start, end - width + 1, hop, dtype=np.int64)
        if starts.size:
            index = (starts - buffer_start)[:, None] + np.arange(width)[None, :]
            yield buffer[index], starts
            last_emitted = int(starts[-1])
            next_start = last_emitted + hop
        # keep what the next window, or the final end-aligned one, may still need
        keep_from = max(buffer_start, min(next_start, end - width))
        buffer, buffer_start = buffer[keep_from - buffer_start:], keep_from
    if buffer is None:
        return
    n_frames = buffer_start + buffer.shape[0]
    last = max(n_frames - width, 0)
    if last != last_emitted:  # the final window aligned to the end (padded when the track is short)
        tail = buffer[last - buffer_start:]
        if tail.shape[0] < width:
            tail = np.pad(tail, [(0, width - tail.shape[0])] + [(0, 0)] * (tail.ndim - 1))
        yield tail[None, :width], np.array([last], np.int64)


