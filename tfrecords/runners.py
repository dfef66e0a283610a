"""Who computes the shards of a plan: one machine's process pool, or an Apache Beam pipeline.

Both runners receive the same list of shards still to write (the plan and the resume test come
first, in the driver) and write each shard with `tfrecords.shards.write_shard`, so the same tracks
give the same bytes whichever runner wrote them.

    pool   a process pool of `--jobs` workers decodes each track, computes its features and serialises
           its TFRecord, a few consecutive tracks of a shard per task (`pool_tasks`), into a
           temporary file of the shard folder, ahead of the main process (at most `tracks_in_flight`
           tracks), which appends those files to the shards, in order (`copy_file_range`: the bytes
           never pass through a pipe or the main process); it logs (DEBUG) how long it waited for
           the workers and how long it wrote. With one job the main process does it all, in memory.
    beam   the same spans as Beam elements: a worker encodes a span into its temporary file; the spans are
           grouped by shard and a worker appends a shard's files in order and writes the shard. Locally
           the DirectRunner runs in multi_processing mode with `--jobs` workers; `--beam-options` go to
           Beam's `PipelineOptions` (e.g. `--runner=DataflowRunner --project=... --region=...`).

`folder_lock` keeps two runs from writing the same shards: a run over all shards locks the folder
for itself; `--shard-index` jobs share the folder and each locks its own shard.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import logging
import os
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TextIO, TypeVar

from orpheus.errors import MissingDependencyError, OrpheusError, OutputExistsError, OutputWriteError
from orpheus.files import stderr_redirected
from orpheus.parallel import parallel_map
from tfrecords.plan import Shard, Track
from tfrecords.shards import (RecordFile, ShardSettings, encode_to_file, encode_track, output_errors, record_file_path,
                              remove_leftovers, shard_state, write_shard)

log = logging.getLogger(__name__)

RUNNERS = ("pool", "beam")
LOCK_NAME = ".preprocessing.lock"
# Tracks whose features the workers may compute ahead of the writer (the main process), in one
# process pool for the whole run: bounds the features held in memory when the writer is slower.
TRACKS_IN_FLIGHT_PER_JOB = 128
IN_FLIGHT_MEMORY_BYTES = 1 << 30
ESTIMATE_TRACK_S = 60.0  # MSD previews are 30 s; allow for longer tracks
# Consecutive tracks of a shard per pool task: up to MAX_TRACKS_PER_TASK, fewer as the run nears its end
# (about TASKS_PER_JOB tasks per worker remain at any time), so that the last tasks, which may leave a core
# idle, are single tracks.
MAX_TRACKS_PER_TASK = 8
TASKS_PER_JOB = 4
BEAM_INSTALL = "pip install 'orpheus-tagger[beam]' (in a clone: pip install -e '.[beam]')"
METRICS_NAMESPACE = "orpheus.preprocessing"


@contextlib.contextmanager
def folder_lock(out_dir: Path, shard_index: int | None) -> Iterator[None]:
    """Hold the output folder's lock for the block, or raise `OutputExistsError` naming the holder.

    Byte 0 of `OUT_DIR/.preprocessing.lock` is the folder: exclusive for a run over all shards,
    shared for a `--shard-index` job, which also takes byte 1 + I exclusively. POSIX record locks
    (`fcntl.lockf`) are released when the process ends, however it ends, and work on NFS.
    """
    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        ranges = [(fcntl.LOCK_EX if shard_index is None else fcntl.LOCK_SH, 0)]
        if shard_index is not None:
            ranges.append((fcntl.LOCK_EX, 1 + shard_index))
        for mode, start in ranges:
            try:
                fcntl.lockf(fd, mode | fcntl.LOCK_NB, 1, start)
            except OSError as err:
                if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # some FUSE mounts
                    log.warning("%s: this filesystem has no locks; make sure no other run writes here", out_dir)
                    break
                if err.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").split("\n")[0].strip() or "unknown"
                raise OutputExistsError(f"another preprocessing run is writing to {out_dir} (pid {holder}); "
                                        "wait for it or choose another folder") from None
        os.pwrite(fd, f"{os.getpid()}\n".ljust(16).encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the locks


class BeamPipelineError(OrpheusError):
    """The Beam pipeline itself failed (not one track, not the output folder)."""


def tracks_in_flight(settings: ShardSettings, jobs: int) -> int:
    """Tracks whose features may be computed ahead of the writer: `TRACKS_IN_FLIGHT_PER_JOB` per job,
    fewer when their features (estimated for `ESTIMATE_TRACK_S`-second tracks) would exceed
    `IN_FLIGHT_MEMORY_BYTES`."""
    values_per_s = settings.features.frames_per_second * (settings.features.n_bins or 1)
    track_bytes = values_per_s * ESTIMATE_TRACK_S * (2 if settings.storage == "float16" else 4)
    by_memory = int(IN_FLIGHT_MEMORY_BYTES // max(track_bytes, 1))
    return max(max(1, jobs) * 4, min(max(1, jobs) * TRACKS_IN_FLIGHT_PER_JOB, by_memory))


T = TypeVar("T")
_END = object()


def _waited(items: Iterable[T], seconds: list[float]) -> Iterator[T]:
    """Yield `items`, adding to `seconds[0]` the time the consumer spent blocked waiting for them;
    closing this closes `items` (a pool then finishes its tasks and stops)."""
    iterator = iter(items)
    try:
        while True:
            start = time.perf_counter()
            item = next(iterator, _END)
            seconds[0] += time.perf_counter() - start
            if item is _END:
                return
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def pool_tasks(todo: Sequence[Shard], jobs: int) -> list[tuple[Shard, int, int]]:
    """The pool's tasks: (shard, first, stop) spans of consecutive tracks, in order, at most `MAX_TRACKS_PER_TASK`
    long and shorter towards the end of the run (a span holds 1 / (`TASKS_PER_JOB` x jobs) of what remains)."""
    remaining = sum(len(shard.tracks) for shard in todo)
    tasks = []
    for shard in todo:
        first = 0
        while first < len(shard.tracks):
            size = min(MAX_TRACKS_PER_TASK, remaining // (max(1, jobs) * TASKS_PER_JOB), len(shard.tracks) - first)
            size = max(1, size)
            tasks.append((shard, first, first + size))
            first += size
            remaining -= size
    return tasks


def run_pool(out_dir: Path, todo: Sequence[Shard], settings: ShardSettings, vocabulary: Sequence[str],
             fingerprints: dict[str, str], *, jobs: int, quiet: bool) -> None:
    """Write `todo` in order from the main process, its tracks encoded by a pool of `jobs` workers."""
    n_tracks = sum(len(shard.tracks) for shard in todo)
    waited = [0.0]
    start = time.perf_counter()
    if jobs <= 1:
        items = [(track, settings, len(vocabulary)) for shard in todo for track in shard.tracks]
        stream = _waited(parallel_map(encode_track, items, jobs=1, desc="tracks", quiet=quiet), waited)
        for shard in todo:
            write_shard(out_dir, shard, (next(stream) for _ in shard.tracks), vocabulary, fingerprints[shard.name])
    else:
        spans = pool_tasks(todo, jobs)
        tasks = [(str(out_dir), shard.name, first, shard.tracks[first:stop], settings, len(vocabulary))
                 for shard, first, stop in spans]
        tasks_of = collections.Counter(shard.name for shard, _, _ in spans)
        for shard in todo:  # what a killed run left, before the workers write this run's files
            remove_leftovers(out_dir, shard)
        files = _waited(parallel_map(encode_to_file, tasks, jobs=jobs, desc="tracks", quiet=quiet,
                                     sizes=[stop - first for _, first, stop in spans],
                                     max_pending=max(jobs, tracks_in_flight(settings, jobs) // MAX_TRACKS_PER_TASK)),
                        waited)
        try:
            for shard in todo:
                write_shard(out_dir, shard, (next(files) for _ in range(tasks_of[shard.name])), vocabulary,
                            fingerprints[shard.name], clean=False)
        finally:
            files.close()  # on an error: the pool finishes its tasks, then their files are removed
            for shard in todo:
                if shard_state(out_dir, shard, fingerprints[shard.name]) != "done":
                    remove_leftovers(out_dir, shard)
    total = time.perf_counter() - start
    log.debug("pool of %d: %d tracks in %.2f s; the writer waited %.2f s for the workers and worked %.2f s",
              jobs, n_tracks, total, waited[0], total - waited[0])


Span = tuple[int, str | None, tuple[str, ...], tuple[Track, ...]]  # (first, record file, skip reasons, tracks)


def encode_span_element(task: tuple[str, int, Sequence[Track]], out_dir: str, settings: ShardSettings,
                        n_tags: int) -> tuple[str, Span]:
    """The first Beam step: encode a span of consecutive tracks of one shard into its record file
    (`tfrecords.shards.encode_to_file`, as a pool task does), in whichever worker got the span.

    `task` is (shard name, index of the span's first track in the shard, the span's tracks). Returns
    (shard name, (first, record file path, per-track skip reasons, the tracks)), keyed for the grouping by shard:
    the tracks travel on with their records, so that the shard's writer needs no copy of the plan. The path is
    None when the file could not be written, which is reported to the driver as a metric.
    """
    from apache_beam.metrics import Metrics

    shard_name, first, tracks = task
    try:
        with output_errors(out_dir):
            handed = encode_to_file((out_dir, shard_name, first, tracks, settings, n_tags))
    except OutputWriteError as err:
        Metrics.string_set(METRICS_NAMESPACE, "write_errors").add(str(err))
        return shard_name, (first, None, (), tuple(tracks))
    return shard_name, (first, str(handed.path), handed.reasons, tuple(tracks))


def write_shard_element(element: tuple[str, Iterable[Span]], out_dir: str,
                        shards: dict[str, tuple[str, int, int, str]], vocabulary: Sequence[str]) -> str:
    """The second Beam step: append a shard's record files in track order and write the shard
    (`tfrecords.shards.write_shard`), in whichever worker got the shard's group.

    `element` is (shard name, its spans from `encode_span_element`); `shards` maps each name to its split,
    index, count of its split's shards and fingerprint. A shard with a span that could not be written is not
    written (its error is already reported); a write error here (full disk...) is reported to the driver as a
    metric, not raised, so that the driver prints it as one line whichever runner ran the step. Returns the
    shard name.
    """
    from apache_beam.metrics import Metrics

    shard_name, spans = element
    split, index, count, shard_fingerprint = shards[shard_name]
    spans = sorted(spans, key=lambda span: span[0])
    if any(path is None for _, path, _, _ in spans):
        return shard_name
    shard = Shard(split, index, count, [track for *_, tracks in spans for track in tracks])
    try:
        with output_errors(out_dir):
            write_shard(Path(out_dir), shard, (RecordFile(Path(path), reasons) for _, path, reasons, _ in spans),
                        vocabulary, shard_fingerprint, clean=False)
    except OutputWriteError as err:
        Metrics.string_set(METRICS_NAMESPACE, "write_errors").add(str(err))
    else:
        Metrics.counter(METRICS_NAMESPACE, "shards_written").inc()
    return shard_name


def _has_flag(flags: Sequence[str], name: str) -> bool:
    return any(flag.split("=", 1)[0] == name for flag in flags)


def beam_flags(beam_options: str, jobs: int, verbose: bool) -> list[str]:
    """`--beam-options` as PipelineOptions flags, with the local defaults filled in: the DirectRunner
    in multi_processing mode with `jobs` workers, and Beam's own logs at ERROR unless `verbose`."""
    flags = shlex.split(beam_options or "")
    if not _has_flag(flags, "--runner"):
        flags.append("--runner=DirectRunner")
    if not _has_flag(flags, "--direct_running_mode"):
        flags.append("--direct_running_mode=multi_processing")
    if not _has_flag(flags, "--direct_num_workers"):
        flags.append(f"--direct_num_workers={max(1, jobs)}")
    if not verbose and not _has_flag(flags, "--default_sdk_harness_log_level"):
        flags.append("--default_sdk_harness_log_level=ERROR")
    return flags


@contextlib.contextmanager
def _workers_import_this_checkout() -> Iterator[None]:
    """Local Beam workers are fresh `python` processes: let them import the same `tfrecords` and
    `orpheus` as this driver (a clone run without installing, or PYTHONPATH pointing elsewhere)."""
    root = str(Path(__file__).resolve().parents[1])
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([root, before] if before else [root])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def _watch_progress(out_dir: Path, spans: Sequence[tuple[Shard, int, int]], fingerprints: dict[str, str], quiet: bool,
                    stop: threading.Event, stream: TextIO) -> None:
    """A progress bar over tracks for the driver, drawn on `stream`: a span counts once its record file is in
    place (`record_file_path`), a shard's tracks once the shard is done (its sidecar), which the workers write."""
    from tqdm import tqdm

    # shard name -> (shard, {record file name: tracks} of its spans not yet counted); names made once, as a long run
    # has a span for every 8 tracks
    pending: dict[str, tuple[Shard, dict[str, int]]] = {}
    for shard, first, stop_at in spans:
        pending.setdefault(shard.name, (shard, {}))[1][record_file_path(out_dir, shard.name, first).name] = stop_at - first
    with tqdm(total=sum(b - a for _, a, b in spans), desc="tracks", unit="track", disable=quiet, dynamic_ncols=True,
              file=stream) as bar:
        while pending and not stop.wait(0.5):
            try:
                present = set(os.listdir(out_dir))
            except OSError:
                continue
            for name, (shard, left) in list(pending.items()):
                if shard_state(out_dir, shard, fingerprints[name]) == "done":
                    bar.update(sum(left.values()))
                    del pending[name]
                    continue
                handed = [file_name for file_name in left if file_name in present]
                if handed:
                    bar.update(sum(left.pop(file_name) for file_name in handed))


@contextlib.contextmanager
def _children_stderr_hidden(hide: bool) -> Iterator[TextIO]:
    """Yield a stream on this process's stderr; with `hide`, processes started in the block (Beam's local
    workers, which print their own start-up lines) write their stderr into a discarded file instead."""
    if not hide:
        yield sys.stderr
        return
    with tempfile.TemporaryFile() as sink, stderr_redirected(sink.fileno()) as saved, \
            os.fdopen(os.dup(saved), "w") as stream:
        yield stream


def run_beam(out_dir: Path, todo: Sequence[Shard], settings: ShardSettings, vocabulary: Sequence[str],
             fingerprints: dict[str, str], *, jobs: int, quiet: bool, verbose: bool = False,
             beam_options: str = "") -> None:
    """Write `todo` from an Apache Beam pipeline: spans of a shard's tracks encoded by any worker
    (`encode_span_element`), grouped by shard, each shard written by one worker (`write_shard_element`).

    Raises:
        MissingDependencyError: Apache Beam is not installed.
        OutputWriteError: a worker could not write its shard (the first such error).
    """
    root = logging.getLogger()
    level = root.level
    if not verbose:  # Beam's import warns, through the root logger, about Google Cloud clients it lacks
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
        root.setLevel(logging.ERROR)
    try:
        import apache_beam as beam
        from apache_beam.metrics.metric import MetricsFilter
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise MissingDependencyError(f"--runner beam needs Apache Beam: {BEAM_INSTALL}") from None
    finally:
        root.setLevel(level)
    # the unit of work is a span of a shard's tracks, as for the pool: shards of unequal sizes, or fewer shards
    # than workers, still keep every worker busy
    spans = pool_tasks(todo, jobs)
    options = PipelineOptions(beam_flags(beam_options, min(jobs, len(spans)), verbose))
    for shard in todo:  # what a killed run left, before the workers write this run's files
        remove_leftovers(out_dir, shard)
    pipeline = beam.Pipeline(options=options)
    _ = (pipeline
         | "spans" >> beam.Create([(shard.name, first, shard.tracks[first:stop]) for shard, first, stop in spans])
         | "spread" >> beam.Reshuffle()  # the spans over the workers, whichever runner
         | "encode" >> beam.Map(encode_span_element, str(out_dir), settings, len(vocabulary))
         | "by shard" >> beam.GroupByKey()
         | "write" >> beam.Map(write_shard_element, str(out_dir),
                               {shard.name: (shard.split, shard.index, shard.count, fingerprints[shard.name])
                                for shard in todo}, list(vocabulary)))
    stop = threading.Event()
    try:
        with _children_stderr_hidden(not verbose) as stream, _workers_import_this_checkout():
            watcher = threading.Thread(target=_watch_progress, args=(out_dir, spans, fingerprints, quiet, stop, stream),
                                       daemon=True)
            watcher.start()
            try:
                result = pipeline.run()
                result.wait_until_finish()
            finally:
                stop.set()
                watcher.join()
                for shard in todo:  # the record files of shards that could not be written
                    if shard_state(out_dir, shard, fingerprints[shard.name]) != "done":
                        remove_leftovers(out_dir, shard)
    except Exception as err:  # a lost worker, a cluster that refused the job: Beam's own errors
        if verbose:
            raise
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise BeamPipelineError(f"the Beam pipeline writing {out_dir} failed: {first[:300]}; rerun with "
                                "--verbose for Beam's log (a rerun resumes)") from err
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
        errors = sorted(set().union(*(r.committed or set() for r in found.get("string_sets", []))))
    except Exception:  # a runner without metrics: the driver's shard check below still tells
        log.debug("the runner returned no metrics", exc_info=True)
        errors = []
    if errors:
        raise OutputWriteError(errors[0] + (f" (and {len(errors) - 1} more shard(s))" if len(errors) > 1 else ""))
