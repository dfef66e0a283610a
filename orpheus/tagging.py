"""Tag audio files with a run directory's model: files -> features -> windows -> batched inference -> scores.

Input: a run directory (`run.json` + `model.keras`, see `orpheus.rundir`) and audio files
(mp3/ogg/flac/wav) or a recorded signal. Output: one `TrackTags` per file, in the sorted file order:
the track's score per tag (mean, or max, over consecutive windows covering the whole track, the last
window aligned to the end as `orpheus.windows` does), the per-window probabilities (the taggram) and,
when asked, the "embedding" layer's output per window.

Throughput: decoding and feature extraction run in a process pool (workers import only numpy,
soundfile and soxr: this module imports TensorFlow lazily, in the main process only), overlapped with
batched inference across tracks in the main process; the model is loaded once. Files longer than
`STREAM_THRESHOLD_S` are streamed block by block (`orpheus.audio.stream_mono`) so memory stays
bounded whatever their length.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from orpheus import audio as audio_io
from orpheus.feature_settings import FeatureSettings
from orpheus.errors import ConfigError, DataFormatError, MissingInputError, OrpheusError

log = logging.getLogger(__name__)

STREAM_THRESHOLD_S = 600.0  # files longer than this are streamed in blocks, in the main process
STREAM_BLOCK_S = 60.0       # seconds of audio decoded per block when streaming
AGGREGATES = ("mean", "max")


# ---------------------------------------------------------------- file discovery

def list_audio_files(path: str | Path) -> list[Path]:
    """One audio file, or every mp3/ogg/flac/wav under a folder (recursive), sorted by path.

    Raises:
        MissingInputError: `path` does not exist, or the folder holds no audio file.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MissingInputError(f"{path}: no such file or folder; --mp3 takes an audio file or a folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in audio_io.AUDIO_EXTENSIONS)
    if not files:
        raise MissingInputError(f"{path}: no {'/'.join(e[1:] for e in audio_io.AUDIO_EXTENSIONS)} files in "
                                "this folder or below; check the path")
    return files


# ---------------------------------------------------------------- features (worker side: numpy only)

@dataclass
class Decoded:
    """What a worker returns for one file: its features, or the error that stopped it."""
    file: str
    features: np.ndarray | None = None
    error: str | None = None


def decode_features(task: tuple[str, FeatureSettings]) -> Decoded:
    """Worker: decode, resample and compute features of one file; errors are returned, not raised."""
    path, settings = task
    try:
        samples, _ = audio_io.load_audio(path, settings.sample_rate)
        return Decoded(path, features=settings.compute(samples))
    except OrpheusError as err:
        return Decoded(path, error=error_naming(path, err))


def error_naming(path: str, err: Exception) -> str:
    """The error message, prefixed with the file when it does not already name it."""
    return str(err) if str(path) in str(err) else f"{path}: {err}"


def stream_features(path: str | Path, settings: FeatureSettings, block_s: float = STREAM_BLOCK_S
                    ) -> Iterator[np.ndarray]:
    """Features of a long file, block by block, equal to `settings.compute` on the whole file.

    Each block of decoded audio is extended by `settings.context` samples of the neighbouring audio,
    its features computed, and only the frames whose full support lies inside the extended block
    are kept, so the concatenation of the yielded blocks equals the whole-file features (frame t is
    centred on sample t * hop) for frame-wise features (waveform, the musicnn log10 preset). With
    the "db" preset and MFCC, the 80 dB floor is taken per block instead of per track, which only
    changes bins more than 80 dB below the block's loudest. At most about `block_s` seconds of
    audio and features are held.

    Yields:
        float32 [n_steps_in_block(, n_bins)], consecutive along time.
    """
    hop, context = settings.hop, settings.context
    margin = -(-context // hop) * hop  # context rounded up to whole hops
    buffer = np.zeros(0, np.float32)
    buffer_start = 0   # global sample index of buffer[0], a multiple of hop
    next_frame = 0     # first global frame not yet yielded
    for block in audio_io.stream_mono(path, settings.sample_rate, block_s):
        buffer = np.concatenate([buffer, block])
        end = buffer_start + buffer.shape[0]
        last_exact = (end - margin) // hop  # frames < last_exact have their right context in the buffer
        if last_exact - next_frame < max(1, int(block_s * settings.sample_rate / hop) // 2):
            continue
        feats = settings.compute(buffer)
        first = next_frame - buffer_start // hop
        yield feats[first:last_exact - buffer_start // hop]
        next_frame = last_exact
        keep_from = max(buffer_start, (next_frame * hop - margin) // hop * hop)
        buffer = buffer[keep_from - buffer_start:]
        buffer_start = keep_from
    if buffer.shape[0]:
        feats = settings.compute(buffer)
        tail = feats[next_frame - buffer_start // hop:]
        if tail.shape[0]:
            yield tail


def duration_s(path: str | Path) -> float:
    """Length of an audio file in seconds from its header, or 0 when the header cannot be read."""
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate if info.samplerate else 0.0
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return 0.0  # the decoder reports the real error later, per file


# ---------------------------------------------------------------- ordered, bounded process pool

def ordered_pool_map(func: Callable, items: Sequence, *, jobs: int, max_in_flight: int) -> Iterator:
    """Yield `func(item)` in input order with at most `max_in_flight` results computed ahead.

    Unlike `Executor.map`, which submits everything at once, finished-but-unconsumed results are
    bounded, so a slow consumer (the model) keeps memory flat on big folders. `jobs <= 1` runs inline.
    """
    if jobs <= 1 or len(items) <= 1:
        yield from map(func, items)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        pending: deque = deque()
        iterator = iter(items)
        for item in iterator:
            pending.append(pool.submit(func, item))
            if len(pending) >= max_in_flight:
                break
        while pending:
            result = pending.popleft().result()
            for item in iterator:
                pending.append(pool.submit(func, item))
                break
            yield result


# ---------------------------------------------------------------- model side

@dataclass
class TrackTags:
    """Tagging result of one file (or recording).

    scores:         float32 [n_tags] aggregated probability per tag, in the model's tag order.
    window_scores:  float32 [n_windows, n_tags] per-window probabilities (the taggram).
    window_start_s: float64 [n_windows] start of each window in seconds.
    embeddings:     float32 [n_windows, embedding_dim] or None when not asked.
    error:          why the file could not be tagged (then the arrays are None).
    """
    file: str
    scores: np.ndarray | None = None
    window_scores: np.ndarray | None = None
    window_start_s: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    error: str | None = None


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


def load_model(run_dir: str | Path):
    """Load `run_dir/model.keras` for inference (custom layers registered via `orpheus.models`)."""
    import keras
    from orpheus.rundir import MODEL_FILE
    try:
        import orpheus.models  # noqa: F401  (registers the custom layers before deserialising)
    except ModuleNotFoundError as err:
        if err.name not in ("orpheus.models",):
            raise
    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise MissingInputError(f"{path}: model not found; --run-dir must hold a trained or converted model")
    try:
        return keras.saving.load_model(str(path), compile=False)
    except (ValueError, OSError, TypeError) as err:
        raise DataFormatError(f"{path}: cannot load the model ({str(err).splitlines()[0]}); retrain or "
                              "reconvert it") from err


class Tagger:
    """A loaded model plus the settings to turn audio into its windows.

    Args:
        run_dir: a run directory (`orpheus.rundir`).
        window_s: seconds per window; default the run's `window_s`. Other lengths need a model whose
            time axis is not fixed.
        hop_s: seconds between window starts; default `window_s` (consecutive windows).
        aggregate: "mean" or "max" over a track's windows.
        batch_size: windows per model call.
        embeddings: also return the "embedding" layer's output per window.
    """

    def __init__(self, run_dir: str | Path, *, window_s: float | None = None, hop_s: float | None = None,
                 aggregate: str = "mean", batch_size: int = 64, embeddings: bool = False) -> None:
        import keras
        from orpheus.rundir import read_run_info
        if aggregate not in AGGREGATES:
            raise ConfigError(f"--aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
        if batch_size <= 0:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        self.info = read_run_info(run_dir)
        self.settings = self.info.features
        fps = self.settings.frames_per_second
        self.window_frames = self.info.window_frames if window_s is None else self.settings.frames(window_s)
        self.hop_frames = self.window_frames if hop_s is None else self.settings.frames(hop_s)
        if self.window_frames <= 0 or self.hop_frames <= 0:
            raise ConfigError(f"--window and --hop must be positive, got {window_s} and {hop_s} seconds")
        self.frames_per_second = fps
        self.aggregate = aggregate
        self.batch_size = batch_size
        self.model = load_model(run_dir)
        fixed = self.model.input_shape[1]
        if fixed is not None and fixed != self.window_frames:
            raise ConfigError(f"this model takes windows of exactly {fixed} steps ({fixed / fps:.3f} s); "
                              f"--window {window_s} gives {self.window_frames}: drop --window or use a model "
                              "with a free time axis")
        n_out = self.model.output_shape[-1]
        if n_out != len(self.info.tags):
            raise DataFormatError(f"{run_dir}: model has {n_out} outputs but run.json lists {len(self.info.tags)} tags")
        outputs = [self.model.output]
        if embeddings:
            try:
                outputs.append(self.model.get_layer("embedding").output)
            except ValueError as err:
                raise DataFormatError('--embeddings needs a layer named "embedding"; this model has none') from err
        self._forward = keras.Model(self.model.inputs, outputs) if embeddings else self.model
        self.embeddings = embeddings
        self._infer = self._make_infer()

    @property
    def tags(self) -> tuple[str, ...]:
        return self.info.tags

    def predict_windows(self, windows: np.ndarray, *, normalised: bool = False
                        ) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the model on windows float32 [n, window_frames(, n_bins)], `batch_size` at a time.

        Windows are normalised here (`orpheus.windows.normalise_windows`) unless `normalised`.
        One graph traced for any batch size (its input signature leaves every axis free).

        Returns:
            (probabilities float32 [n, n_tags], embeddings float32 [n, dim] or None).
        """
        from orpheus.windows import normalise_windows
        probs, embeds = [], []
        for start in range(0, windows.shape[0], self.batch_size):
            chunk = windows[start:start + self.batch_size]
            chunk = chunk if normalised else normalise_windows(chunk, self.info)
            out = self._infer(chunk)
            if self.embeddings:
                probs.append(out[0].numpy())
                embeds.append(out[1].numpy().reshape(chunk.shape[0], -1))
            else:
                probs.append(out.numpy())
        return (np.concatenate(probs).astype(np.float32),
                np.concatenate(embeds).astype(np.float32) if self.embeddings else None)

    def _make_infer(self):
        import tensorflow as tf
        forward = self._forward

        @tf.autograph.experimental.do_not_convert
        def infer(windows):
            return forward(windows, training=False)

        signature = [tf.TensorSpec([None] * len(self.model.input_shape), tf.float32)]
        return tf.function(infer, input_signature=signature)

    # ---- tagging

    def tag_features(self, name: str, features: np.ndarray) -> TrackTags:
        """Tag one track given its whole features float32 [n_steps(, n_bins)]."""
        return next(self._tag_stream(iter([(name, iter([features]), None)])))

    def tag_audio(self, name: str, samples: np.ndarray) -> TrackTags:
        """Tag float32 [n_samples] mono audio already at the model's sample rate (e.g. a recording)."""
        return self.tag_features(name, self.settings.compute(np.asarray(samples, np.float32)))

    def tag_files(self, files: Sequence[str | Path], *, jobs: int = 1, quiet: bool = False,
                  stream_threshold_s: float = STREAM_THRESHOLD_S, block_s: float = STREAM_BLOCK_S
                  ) -> Iterator[TrackTags]:
        """Tag files in order: features in `jobs` worker processes, overlapped with batched inference.

        Files longer than `stream_threshold_s` are streamed in `block_s` blocks in this process.
        Unreadable files come back as a `TrackTags` with `error` set; the others are still tagged.
        """
        files = [str(f) for f in files]
        long_files = {f for f in files if duration_s(f) > stream_threshold_s}
        pooled = [(f, self.settings) for f in files if f not in long_files]
        decoded = ordered_pool_map(decode_features, pooled, jobs=jobs, max_in_flight=max(2, 4 * jobs))

        def sources() -> Iterator[tuple[str, Iterator[np.ndarray] | None, str | None]]:
            for f in files:
                if f in long_files:
                    log.info("%s: long file (%.0f s), streaming in %.0f s blocks", f, duration_s(f), block_s)
                    yield f, stream_features(f, self.settings, block_s), None
                else:
                    item = next(decoded)
                    yield item.file, (iter([item.features]) if item.error is None else None), item.error

        bar = tqdm(total=len(files), desc="tagging", unit="file", disable=quiet, dynamic_ncols=True)
        try:
            for result in self._tag_stream(sources()):
                bar.update()
                yield result
        finally:
            bar.close()

    def _tag_stream(self, sources: Iterable[tuple[str, Iterator[np.ndarray] | None, str | None]]
                    ) -> Iterator[TrackTags]:
        """Batch windows across tracks; yield each track's result, in order, once all its windows ran.

        Each source is (name, iterator of consecutive feature blocks, error). Windows of a streamed
        track are cut from a rolling frame buffer, at the same starts as `orpheus.windows.window_starts`
        on the whole track (last window aligned to the end).
        """
        queue: deque[_Pending] = deque()
        batch: list[tuple[_Pending, np.ndarray, np.ndarray]] = []
        n_batched = 0

        def flush() -> None:
            nonlocal batch, n_batched
            if not batch:
                return
            windows = np.concatenate([w for _, w, _ in batch])
            probs, embeds = self.predict_windows(windows)
            offset = 0
            for pending, w, starts in batch:
                n = w.shape[0]
                pending.probabilities.append(probs[offset:offset + n])
                pending.starts.append(starts)
                if embeds is not None:
                    pending.embeddings.append(embeds[offset:offset + n])
                offset += n
            batch, n_batched = [], 0

        def add(pending: _Pending, windows: np.ndarray, starts: np.ndarray) -> None:
            nonlocal n_batched
            pending.n_windows += windows.shape[0]
            batch.append((pending, windows, starts))
            n_batched += windows.shape[0]
            if n_batched >= self.batch_size:
                flush()

        def ready() -> Iterator[TrackTags]:
            while queue and queue[0].done:
                yield self._finish(queue.popleft())

        for name, blocks, error in sources:
            pending = _Pending(TrackTags(file=name, error=error))
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

    The starts are those of `orpheus.windows.window_starts` on the whole track: every `hop` frames,
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


# ---------------------------------------------------------------- outputs

def ranked_tags(tags: Sequence[str], scores: np.ndarray, *, threshold: float | None = None,
                top: int | None = None) -> list[tuple[str, float]]:
    """(tag, probability) sorted by probability (descending, ties by tag), filtered by threshold or top-k."""
    order = sorted(range(len(tags)), key=lambda i: (-float(scores[i]), tags[i]))
    pairs = [(tags[i], float(scores[i])) for i in order]
    if threshold is not None:
        pairs = [p for p in pairs if p[1] >= threshold]
    if top is not None:
        pairs = pairs[:top]
    return pairs


def json_record(result: TrackTags, tags: Sequence[str], *, threshold: float | None = None, top: int | None = None,
                taggram: bool = False) -> dict[str, Any]:
    """`{"file": ..., "tags": {tag: probability}}` (all tags unless filtered), + "taggram" / "error"."""
    if result.error is not None:
        return {"file": result.file, "error": result.error}
    record: dict[str, Any] = {"file": result.file,
                              "tags": dict(ranked_tags(tags, result.scores, threshold=threshold, top=top))}
    if taggram:
        record["taggram"] = {"tags": list(tags), "window_start_s": [round(float(s), 4) for s in result.window_start_s],
                             "probabilities": np.round(result.window_scores, 6).tolist()}
    return record


def plot_taggram(path: str | Path, result: TrackTags, tags: Sequence[str], window_s: float) -> None:
    """Heat map of tag probabilities (rows, model order) over time (columns, one per window), as a PNG."""
    import matplotlib
    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt
    from orpheus.files import atomic_path
    probs = result.window_scores
    fig = plt.figure(figsize=(max(6.0, 0.25 * probs.shape[0] + 3), max(4.0, 0.18 * len(tags) + 1.5)))
    ax = fig.subplots()
    ends = result.window_start_s + window_s
    image = ax.imshow(probs.T, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0,
                      vmax=max(float(probs.max()), 1e-6), origin="upper")
    ax.set_yticks(np.arange(len(tags)), tags, fontsize=6)
    step = max(1, probs.shape[0] // 12)
    ticks = np.arange(0, probs.shape[0], step)
    ax.set_xticks(ticks, [f"{result.window_start_s[i]:.1f}" for i in ticks], fontsize=7)
    ax.set(xlabel=f"window start (s); last window ends at {ends[-1]:.1f} s", title=f"Taggram: {Path(result.file).name}")
    fig.colorbar(image, ax=ax, label="probability")
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
