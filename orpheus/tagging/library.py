"""Library-scale `predict`: tag a whole music folder into a JSON-lines log and/or the files' own tags, resumably.

Input: audio files (a folder walked recursively, sorted) and a loaded `orpheus.api.Tagger`.
Output:
    OUT.jsonl (`--output`), one JSON object per file and line, appended as each file finishes:
        {"path": absolute path, "size": bytes, "mtime_ns": int, "model": {"name", "run_dir", "sha256"},
         "settings": {"window_s", "hop_s", "aggregate", "threshold", "top"}, "tags": {tag: probability},
         "warnings": [...], "error": null or why,
         "tag_write": (with --write-tags) {"status", "reason" when skipped, "fields": the Orpheus fields as
                      written, "previous": the old values of those that changed, "method": how the file was
                      written}}
        size and mtime_ns are read after any tag writing, so they describe the file as it now is.
    the files' own metadata (`--write-tags`, see `orpheus.tagging.file_tags.writer`).
    stdout: with --write-tags (or --dry-run), one line per file written, skipped or that would be; with
        --format json, the record above as one JSON line per file instead. Input warnings (near-silent,
        truncated, ...) go to the log (stderr) in every mode, as with plain `predict`.

Resuming: a rerun skips a file whose latest record has the same path, size, mtime_ns, model digest and
settings and no error (files that failed are retried: they fail fast, and the cause may have been fixed).
With `--write-tags` a file whose ORPHEUS_MODEL field already names this model and selection is not
rewritten (nor even tagged, unless the log needs its record). Each record is written with one
`write` + flush + fsync, so a kill loses at most the file in flight; a torn last line left by a kill
is cut off, with a warning, when the next run opens the log. The log is locked (`flock`) while a
run appends to it, so two runs cannot interleave their lines.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

from orpheus import __version__
from orpheus.api import Tagger
from orpheus.errors import OrpheusError, Tally
from orpheus.files import check_output
from orpheus.ownership import FileKind
from orpheus.tagging.file_tags import writer as tag_writer
from orpheus.tagging.file_tags.writer import SKIPPED
from orpheus.tagging.outputs import ranked_tags

log = logging.getLogger(__name__)


class LogBusyError(OrpheusError):
    """Another run is appending to the same results log."""


# ---------------------------------------------------------------- the results log

def file_key(path: str | os.PathLike) -> tuple[str, int, int] | None:
    """(absolute path, size, mtime_ns) of a file as it is now, or None when it cannot be stat'ed."""
    absolute = os.path.abspath(path)
    try:
        stat = os.stat(absolute)
    except OSError:
        return None
    return absolute, stat.st_size, stat.st_mtime_ns


RESULTS_LOG_HEADER = "orpheus_results_log"   # the key of a log's first line, its mark: {"orpheus_results_log": 1, ...}
RESULTS_LOG_FORMAT = 1


def is_results_log(path: Path) -> bool:
    """Whether `path` is a results log Orpheus wrote: its first line is the header record, or (a log
    written before the header existed) a record with the keys "path", "model" and "settings"."""
    try:
        with open(path, "rb") as f:
            first = json.loads(f.readline(1 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and (RESULTS_LOG_HEADER in first or {"path", "model", "settings"} <= first.keys())


RESULTS_LOG = FileKind("results log", is_results_log)


class ResultsLog:
    """An append-only JSON-lines file of per-file records, locked while open.

    Use as a context manager: opening checks that the file is a results log (or new), repairs a torn
    last line and indexes the complete records by path (the latest record of a path wins). A new log
    starts with the header record {"orpheus_results_log": 1, "written_by": ...}, its mark.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        # path -> (size, mtime_ns, model sha256, settings as canonical JSON, succeeded) of its latest record:
        # a few hundred bytes per file, not the whole record, so a library of 10^5 files indexes in tens of MB
        self.latest: dict[str, tuple] = {}
        self.dropped_lines = 0
        self._file = None

    def __enter__(self) -> "ResultsLog":
        check_output(self.path, RESULTS_LOG, resume=True, flag="--output")
        try:
            self._file = open(self.path, "a+b")
        except OSError as err:
            raise self._error("cannot open the results log", err) from err
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            self._file.close()
            raise LogBusyError(f"{self.path}: another predict run is writing to this log; wait for it to "
                               "finish or give another --output") from err
        try:
            self._load()
        except BaseException:
            self._file.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()  # closing releases the lock

    def _load(self) -> None:
        f = self._file
        f.seek(0)
        good_end = 0
        for line in f:
            if not line.endswith(b"\n"):
                break  # a torn last line: cut off below
            good_end += len(line)
            try:
                record = json.loads(line)
                if RESULTS_LOG_HEADER not in record:
                    self._index(record)
            except (ValueError, KeyError, TypeError, AttributeError):
                self.dropped_lines += 1
        size = f.seek(0, os.SEEK_END)
        if size > good_end:  # only in a file recognised as a results log (see __enter__)
            log.warning("%s: cut off an incomplete last line (%d bytes) left by an interrupted run",
                        self.path, size - good_end)
            self._cut(good_end)
        if self.dropped_lines:
            log.warning("%s: ignored %d malformed lines", self.path, self.dropped_lines)
        if good_end == 0:
                self._write({RESULTS_LOG_HEADER: RESULTS_LOG_FORMAT, "written_by": f"orpheus {__version__}"})

    def _index(self, record: dict[str, Any]) -> None:
        settings = sys.intern(_canonical(record.get("settings")))
        sha256 = sys.intern(str(record.get("model", {}).get("sha256")))
        self.latest[record["path"]] = (record.get("size"), record.get("mtime_ns"), sha256, settings,
                                       record.get("error") is None)

    def is_done(self, key: tuple[str, int, int] | None, model_sha256: str, settings: dict[str, Any]) -> bool:
        """Whether the file `key` (see `file_key`) has a successful record for this model and settings."""
        if key is None:
            return False
        return self.latest.get(key[0]) == (key[1], key[2], model_sha256, _canonical(settings), True)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line, then flush and fsync, so a kill loses at most this record.

        Raises:
            OrpheusError: the disk is full or the log cannot be written; the line is taken back, so the
                records so far stay valid and a rerun resumes after them.
        """
        self._write(record)
        self._index(record)

    def _write(self, record: dict[str, Any]) -> None:
        # straight to the file descriptor (opened for appending), so no buffer holds a torn line after a failure
        fd = self._file.fileno()
        end = os.fstat(fd).st_size
        data = memoryview((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        except OSError as err:
            try:
                self._cut(end)      # no torn line left behind
            except OSError:
                pass
            raise self._error("cannot append to the results log", err) from err

    def _cut(self, end: int) -> None:
        os.ftruncate(self._file.fileno(), end)
        os.fsync(self._file.fileno())

    def _error(self, what: str, err: OSError) -> OrpheusError:
        """The one-line error for `err` met on the log, with the fix that works for its cause."""
        advice = {errno.ENOSPC: "no space left on device; free some space, then rerun the same command to resume",
                  errno.EDQUOT: "disk quota exceeded; free some space, then rerun the same command to resume",
                  errno.EROFS: "the file system is read-only; give --output a file on a writable one",
                  errno.EACCES: "permission denied; give --output a file you may write",
                  errno.EPERM: "permission denied; give --output a file you may write"}
        reason = advice.get(err.errno, f"{err.strerror or err}; give --output another file")
        return OrpheusError(f"{self.path}: {what}: {reason}")


class StreamLog:
    """`--output -`: the records as JSON lines on standard output (nothing to resume, nothing to lock)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __enter__(self) -> "StreamLog":
        return self

    def __exit__(self, *exc) -> None:
        self.stream.flush()

    def is_done(self, *args) -> bool:
        return False

    def append(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.stream.flush()


def _canonical(settings: Any) -> str:
    """Settings as one comparable string (key order does not matter)."""
    return json.dumps(settings, sort_keys=True)


# ---------------------------------------------------------------- the run

@dataclass
class LibraryOptions:
    """What a library run writes.

    output: the JSON-lines log, or None.
    write_tags / write_genre / dry_run: see `orpheus.tagging.file_tags.writer`; dry_run writes nothing anywhere.
    fmt: "table" (a line per file written, skipped or that would be) or "json" (a record per file).
    threshold / top: the tag selection (as predict's --threshold / --top).
    settings: window_s, hop_s, aggregate: part of the resume key, with the selection.
    """
    output: str | None = None
    write_tags: bool = False
    write_genre: bool = False
    dry_run: bool = False
    fmt: str = "table"
    threshold: float | None = None
    top: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def resume_settings(self) -> dict[str, Any]:
        return {**self.settings, "threshold": self.threshold, "top": self.top}

    def selection_label(self) -> str:
        """The selection as written into ORPHEUS_MODEL: `top 5`, `threshold 0.3`, plus non-default settings."""
        parts = [f"top {self.top}" if self.top is not None else
                 f"threshold {self.threshold:g}" if self.threshold is not None else "all tags"]
        parts += [f"{key} {value}" for key, value in sorted(self.settings.items())
                  if value is not None and not (key == "aggregate" and value == "mean")]
        return ", ".join(parts)


@dataclass
class LibrarySummary:
    """Counts of a library run, and the tag-writing outcome of each tagged file."""
    tagged: int = 0
    failed: int = 0
    skipped_done: int = 0
    outcomes: list = field(default_factory=list)

    def tally(self, total: int) -> Tally:
        """The exit status's counts: files that failed, and files whose tags could not be written."""
        return Tally(total, failed=self.failed, skipped=sum(o.status == SKIPPED for o in self.outcomes))


def run_library(tagger, files: Sequence[str | os.PathLike], options: LibraryOptions, *, quiet: bool = False,
                report: TextIO | None = None, **tag_kwargs) -> LibrarySummary:
    """Tag `files` with `tagger` (an `orpheus.api.Tagger`), appending to the log and/or writing tags.

    `report` (default stdout) gets one line per file whose tags were written, would be written or were
    skipped. `tag_kwargs` go to `orpheus.tagging.tagger.TaggingEngine.tag_files` (e.g. stream_threshold_s).
    """
    report = report or sys.stdout
    identity = tagger.identity
    model_label = f"{identity.label}; {options.selection_label()}"
    settings = options.resume_settings()
    summary = LibrarySummary()
    # a dry run writes nothing, the log included: every file counts as not yet logged
    results_log = None
    if options.output == "-" and not options.dry_run:
        results_log = StreamLog(sys.stdout)
        report = sys.stderr if report is sys.stdout else report   # stdout carries the records
    elif options.output is not None and not options.dry_run:
        results_log = ResultsLog(options.output)

    def needs_work(path: str) -> bool:
        logged = options.output is None or (
            results_log is not None and results_log.is_done(file_key(path), identity.sha256, settings))
        tagged = not options.write_tags or tag_writer.already_tagged(
            tag_writer.read_fields(path), model_label, genre=options.write_genre)
        return not (logged and tagged)

    def process() -> None:
        from tqdm import tqdm
        scan = tqdm(files, desc="checking what is done", unit="file", disable=quiet or len(files) < 1000,
                    dynamic_ncols=True)
        todo = [str(f) for f in scan if needs_work(str(f))]
        summary.skipped_done = len(files) - len(todo)
        if summary.skipped_done:
            log.info("%d of %d files already done by this model with these settings; tagging the other %d",
                     summary.skipped_done, len(files), len(todo))
        if options.write_tags:  # leftovers of a killed run in these folders: removed (or reported) first
            for line in tag_writer.clean_stale_temporaries(files, dry_run=options.dry_run):
                log.warning("%s", line)
        as_json = options.fmt == "json"
        for result in _tag(tagger, todo, quiet=quiet, **tag_kwargs):
            record = _record(result, tagger, identity, settings, options)
            for warning in record["warnings"]:
                log.warning("%s: %s", result.file, warning)
            if result.error is None:
                summary.tagged += 1
                if options.write_tags:
                    update = tag_writer.update_for(list(record["tags"]), model_label, genre=options.write_genre)
                    outcome = tag_writer.write_tags(result.file, update, dry_run=options.dry_run)
                    summary.outcomes.append(outcome)
                    record["tag_write"] = outcome.to_json()
                    if outcome.status != tag_writer.UNCHANGED and not as_json:
                        report.write(outcome.describe() + "\n")
            else:
                summary.failed += 1
                log.warning("%s", result.error)
            key = file_key(result.file)
            if key is not None:
                record["size"], record["mtime_ns"] = key[1], key[2]
            if results_log is not None:
                results_log.append(record)
            elif options.output is not None and not as_json:
                shown = record["tags"] if record["error"] is None else {"error": record["error"]}
                report.write(f"{result.file}: would append to {options.output}: "
                             f"{json.dumps(shown, ensure_ascii=False)}\n")
            if as_json and (options.write_tags or results_log is None):
                report.write(json.dumps(record, ensure_ascii=False) + "\n")
            report.flush()

    if results_log is not None:
        with results_log:
            process()
    else:
        process()
    if options.write_tags:
        log.info("tags: %s", tag_writer.summary_line(summary.outcomes))
    log.info("%d files tagged, %d failed, %d already done%s", summary.tagged, summary.failed,
             summary.skipped_done, f" -> {options.output}" if results_log is not None else "")
    return summary


def _tag(tagger, files: list[str], *, quiet: bool, **tag_kwargs) -> Iterator:
    if not files:
        return iter(())
    return tagger.core.tag_files(files, jobs=tagger.jobs, quiet=quiet, **tag_kwargs)


def _record(result, tagger, identity, settings: dict[str, Any], options: LibraryOptions) -> dict[str, Any]:
    tags = {} if result.error is not None else dict(
        ranked_tags(tagger.tag_names, result.scores, threshold=options.threshold, top=options.top))
    return {"path": os.path.abspath(result.file), "size": None, "mtime_ns": None, "model": identity.to_json(),
            "settings": settings, "tags": tags, "warnings": list(getattr(result, "warnings", None) or []),
            "error": result.error}


def run_predict_library(files: Sequence[str | os.PathLike], options: LibraryOptions, *, run_dir: str | None,
                        model: str, window_s: float | None, hop_s: float | None, aggregate: str, batch_size: int | None,
                        jobs: int, quiet: bool, precision: str = "exact", **tag_kwargs) -> int:
    """`predict --output` / `--write-tags`: load the model, run the library; returns what was done
    (a failed file, or a file whose tags could not be written, counts as not done). A long run: TensorFlow's freed
    batch memory goes back to the OS at once (`free_memory`)."""
    tagger = Tagger(None if run_dir is not None else model, run_dir=run_dir, window_s=window_s, hop_s=hop_s,
                    aggregate=aggregate, batch_size=batch_size, jobs=jobs, precision=precision, free_memory=True)
    options.settings = {"window_s": window_s, "hop_s": hop_s, "aggregate": aggregate}
    if precision != "exact":  # exact is the model's own numbers: records of either kind stay comparable
        options.settings["precision"] = precision
    summary = run_library(tagger, files, options, quiet=quiet, **tag_kwargs)
    return summary.tally(len(files))
