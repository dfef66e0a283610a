"""`orpheus predict`'s run: tag audio files, a folder or the microphone (`run_predict`).

Input: a model (default the converted pretrained MSD_musicnn, or a run directory) + audio files, a folder or a
recording. Output: tags on stdout (table, JSON lines or CSV), an optional taggram PNG and embeddings .npy; with
--output, --write-tags or --dry-run a library run (`orpheus.tagging.library`).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path
from typing import Sequence, TextIO

import numpy as np

from orpheus.errors import ConfigError, Tally
from orpheus.files import atomic_path, check_output, write_csv_atomic
from orpheus.models.pretrained import DEFAULT_MODEL, resolve_model
from orpheus.ownership import FileKind, csv_kind, read_head
from orpheus.tagging.inputs import STREAM_THRESHOLD_S, list_audio_files
from orpheus.tagging.library import RESULTS_LOG, LibraryOptions, run_predict_library
from orpheus.tagging.outputs import TAGGRAM, json_record, plot_taggram, ranked_tags
from orpheus.tagging.recording import RECORDING, input_device
from orpheus.tagging.recording import record as record_audio
from orpheus.tagging.recording import save_recording as save_wav
from orpheus.tagging.tagger import TaggingEngine

log = logging.getLogger(__name__)

TABLE_TOP = 10  # tags shown per file by the table format when neither --top nor --threshold is given


def write_outputs(results: list, tagger, *, fmt: str, threshold: float | None, top: int | None,
                  taggram: str | None, stream: TextIO) -> None:
    """Print the results in `fmt` to `stream`."""
    tags = tagger.tags
    if fmt == "json":
        for result in results:
            record = json_record(result, tags, threshold=threshold, top=top, taggram=taggram is not None)
            stream.write(json.dumps(record) + "\n")
    elif fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["file", "rank", "tag", "probability", "error"])
        for result in results:
            if result.error is not None:
                writer.writerow([result.file, "", "", "", result.error])
                continue
            for rank, (tag, p) in enumerate(ranked_tags(tags, result.scores, threshold=threshold, top=top), 1):
                writer.writerow([result.file, rank, tag, f"{p:.6f}", ""])
    else:
        if threshold is None and top is None:
            top = TABLE_TOP
        for result in results:
            stream.write(f"{result.file}\n")
            if result.error is not None:
                stream.write(f"  ERROR: {result.error}\n\n")
                continue
            for warning in result.warnings:
                stream.write(f"  warning: {warning}\n")
            pairs = ranked_tags(tags, result.scores, threshold=threshold, top=top)
            width = max([len(t) for t, _ in pairs] + [3])
            for tag, p in pairs:
                stream.write(f"  {tag:<{width}}  {p:.3f}\n")
            if not pairs:
                stream.write("  (no tag above the threshold)\n")
            stream.write("\n")


def taggram_paths(png: str, files: Sequence[str | Path]) -> list[Path]:
    """PNG path per tagged file: `png` itself for one file, else `STEM-NNN-AUDIOSTEM.png` beside it."""
    png_path = Path(png)
    if len(files) == 1:
        return [png_path]
    return [png_path.with_name(f"{png_path.stem}-{i:03d}-{Path(f).stem}{png_path.suffix or '.png'}")
            for i, f in enumerate(files)]


EMBEDDINGS_COLUMNS = ("file", "first_window", "n_windows")
EMBEDDINGS_INDEX = csv_kind("embeddings index", EMBEDDINGS_COLUMNS)


def _is_embeddings(path: Path) -> bool:
    """An .npy file with an embeddings index written by Orpheus beside it."""
    return read_head(path, 6) == b"\x93NUMPY" and EMBEDDINGS_INDEX.recognise(embeddings_index_path(path))


EMBEDDINGS = FileKind("embeddings file", _is_embeddings)


def write_embeddings(path: Path, results: list) -> None:
    """float32 [total_windows, dim] in file order to `path`, + `path.index.csv` (file, first_window, n_windows)."""
    good = [r for r in results if r.error is None]
    if not good:
        return
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.concatenate([r.embeddings for r in good]).astype(np.float32))
    rows, first = [], 0
    for r in good:
        rows.append([r.file, first, r.embeddings.shape[0]])
        first += r.embeddings.shape[0]
    write_csv_atomic(embeddings_index_path(path), EMBEDDINGS_COLUMNS, rows)


def embeddings_index_path(path: Path) -> Path:
    return path.with_name(path.name + ".index.csv")


def check_predict_outputs(files: Sequence[Path], *, taggram: str | None, embeddings: str | None,
                          save_recording: str | None, overwrite: bool) -> None:
    """The ownership rule on predict's file outputs, before any work: each taggram PNG, the embeddings
    and their index, the saved recording."""
    outputs = []
    if taggram is not None:
        outputs += [(png, TAGGRAM, "--taggram") for png in taggram_paths(taggram, files or ["<microphone>"])]
    if embeddings is not None:
        outputs += [(Path(embeddings), EMBEDDINGS, "--embeddings"),
                    (embeddings_index_path(Path(embeddings)), EMBEDDINGS_INDEX, "--embeddings")]
    if save_recording is not None:
        outputs.append((Path(save_recording), RECORDING, "--save-recording"))
    for path, kind, flag in outputs:
        check_output(path, kind, overwrite=overwrite, flag=flag)


def run_predict(*, run_dir: str | None = None, model: str = DEFAULT_MODEL, mp3: str | None = None,
                record: bool = False, record_length: float = 30.0, countdown_s: int = 3,
                save_recording: str | None = None,
                window_s: float | None = None, hop_s: float | None = None, threshold: float | None = None,
                top: int | None = None, fmt: str = "table", aggregate: str = "mean", taggram: str | None = None,
                embeddings: str | None = None, jobs: int = 1, batch_size: int | None = None, overwrite: bool = False,
                quiet: bool = False, stream: TextIO | None = None, stream_threshold_s: float | None = None,
                precision: str = "exact", output: str | None = None, write_tags: bool = False,
                write_genre: bool = False, dry_run: bool = False) -> Tally:
    """Tag files or a recording and print the results; returns how many files were tagged and failed.

    With `output` (a JSON-lines log) or `write_tags`, runs `orpheus.tagging.library` instead (resumable).
    """
    stream = stream or sys.stdout
    if (mp3 is None) == (not record):
        raise ConfigError("give exactly one of --mp3 FILE_OR_DIR and --record")
    if save_recording is not None and not record:
        raise ConfigError("--save-recording needs --record")
    if top is not None and top <= 0:
        raise ConfigError(f"--top must be positive, got {top}")
    files = list_audio_files(mp3) if mp3 is not None else []
    check_predict_outputs(files, taggram=taggram, embeddings=embeddings, save_recording=save_recording,
                          overwrite=overwrite)
    if output is not None or write_tags or write_genre or dry_run:  # library-scale run (orpheus.tagging.library)
        return _predict_library(files, run_dir=run_dir, model=model, window_s=window_s, hop_s=hop_s,
                                aggregate=aggregate, batch_size=batch_size, jobs=jobs, quiet=quiet,
                                precision=precision, threshold=threshold, top=top, output=output, write_tags=write_tags,
                                write_genre=write_genre, dry_run=dry_run, fmt=fmt, record=record, taggram=taggram,
                                embeddings=embeddings, stream_threshold_s=stream_threshold_s or STREAM_THRESHOLD_S)
    if record:  # fail fast, before loading the model, when there is nothing to record from
        input_device()
    model_dir = resolve_model(run_dir, "--run-dir")[0] if run_dir is not None else resolve_model(model)[0]
    tagger = TaggingEngine(model_dir, window_s=window_s, hop_s=hop_s, aggregate=aggregate, batch_size=batch_size,
                    embeddings=embeddings is not None, precision=precision, free_memory=True)
    if record:
        samples = record_audio(record_length, tagger.info.features.sample_rate, countdown_s=countdown_s, quiet=quiet)
        if save_recording is not None:
            save_wav(save_recording, samples, tagger.info.features.sample_rate)
        results = [tagger.tag_audio(save_recording or "<microphone>", samples)]
    else:
        results = list(tagger.tag_files(files, jobs=jobs, quiet=quiet,
                                        stream_threshold_s=stream_threshold_s or STREAM_THRESHOLD_S))
    failed = [r for r in results if r.error is not None]
    for r in failed:
        log.error("%s", r.error)
    for r in results:
        for warning in r.warnings:
            log.warning("%s: %s", r.file, warning)
    write_outputs(results, tagger, fmt=fmt, threshold=threshold, top=top, taggram=taggram, stream=stream)
    if taggram is not None:
        window_s_used = tagger.window_frames / tagger.frames_per_second
        for result, png in zip(results, taggram_paths(taggram, [r.file for r in results])):
            if result.error is None:
                plot_taggram(png, result, tagger.tags, window_s_used)
    if embeddings is not None:
        write_embeddings(Path(embeddings), results)
    return Tally(len(results), failed=len(failed))


def _predict_library(files: list, *, output: str | None, write_tags: bool, write_genre: bool, dry_run: bool,
                     fmt: str, record: bool, taggram: str | None, embeddings: str | None, threshold: float | None,
                     top: int | None, **kwargs) -> Tally:
    """Check the library-run flags, then `orpheus.tagging.library.run_predict_library`."""
    if record or taggram is not None or embeddings is not None:
        raise ConfigError("--output and --write-tags tag files: drop --record, --taggram and --embeddings")
    if write_genre and not write_tags:
        raise ConfigError("--write-genre needs --write-tags")
    if dry_run and not write_tags and output is None:
        raise ConfigError("--dry-run needs --write-tags or --output")
    if fmt == "csv":
        raise ConfigError("--output and --write-tags report one line per file: use --format table or json")
    if write_tags and threshold is None and top is None:
        top = TABLE_TOP  # the same default selection as the table
    if output not in (None, "-") and not dry_run:   # before the model loads: the log must be new or one of ours
        check_output(output, RESULTS_LOG, resume=True, flag="--output")
    options = LibraryOptions(output=output, write_tags=write_tags, write_genre=write_genre, dry_run=dry_run,
                             fmt=fmt, threshold=threshold, top=top)
    return run_predict_library(files, options, **kwargs)
