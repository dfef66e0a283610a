"""Find each track's silences and drop too-short or too-silent tracks: `wrangle.csv` -> `ultimate.csv`.

Input: `wrangle.csv` (see `msd.wrangle`) and the audio root its `file_path` column is relative to.
Output: `ultimate.csv`, one row per kept track: `track_id, artist_id, mp3_path` (= file_path, relative
to the root), the input columns, then (seconds everywhere)

    audio_start            start of the first non-silent interval
    audio_end              end of the last non-silent interval
    effective_clip_length  audio_end - audio_start
    non_silence_length     total length of the non-silent intervals
    mid_silence_length     total silence between audio_start and audio_end (effective - non-silent)
    max_silence_length     longest single silence between two non-silent intervals (0 if none)
    silence_percentage     100 * mid_silence_length / effective_clip_length (0 for an empty track)
    non_silent_intervals   JSON list of [start_s, end_s]

and `<output stem>.dropped.csv` with every dropped row and its `reason` (too_small, decode_failed: ...,
too_short, too_much_silence, long_silence).

Non-silent means a frame within `top_db` = 60 dB of the track's loudest frame, with the framing of
`librosa.effects.split` (frame_length 2048, hop 512, centred frames padded with zeros, mono mix),
implemented here with numpy on cumulative sums. Input rows that already carry the analysis columns
are not decoded again, so an earlier output can be refiltered without decoding; and each analysis is
logged to `.<output>.partial.jsonl` as it finishes, so rerunning an interrupted command resumes
where it stopped (the log is removed once the output is written).

Example:
    orpheus silence wrangle.csv ultimate.csv --root-dir AUDIO_ROOT --min-size 100000 \\
        --filter-trim-length 15 --filter-tot-silence 3 --filter-max-silence 1
"""


import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from msd.converters.common import MASTER_CSV_KIND
from msd.drop_report import DROP_REPORT, dropped_path, format_drop_summary
from orpheus.audio.decode import load_audio
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import DataFormatError, MissingInputError
from orpheus.files import atomic_path, check_output, partial_path, read_partial, require_dir, require_file
from orpheus.parallel import parallel_map

log = logging.getLogger(__name__)

TOP_DB = 60.0
FRAME_LENGTH = 2048
HOP_LENGTH = 512
AMIN = 1e-5  # amplitude floor of librosa.amplitude_to_db
STAT_COLUMNS = ["audio_start", "audio_end", "effective_clip_length", "mid_silence_length", "non_silence_length",
                "max_silence_length", "silence_percentage"]
ANALYSIS_COLUMNS = STAT_COLUMNS + ["non_silent_intervals"]
REQUIRED_COLUMNS = ["track_id", "artist_id", "file_path", "file_size"]


# ---- analysis (pure) ----
def frame_rms(audio: np.ndarray, frame_length: int = FRAME_LENGTH, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """Root-mean-square of centred frames, as `librosa.feature.rms(center=True, pad_mode="constant")`.

    Args:
        audio: float32 [n_samples], mono.

    Returns:
        float64 [1 + n_samples // hop_length]: RMS of each frame (zero padding outside the signal).
    """
    pad = frame_length // 2
    power = np.zeros(len(audio) + 2 * pad + 1, dtype=np.float64)
    np.cumsum(np.square(audio, dtype=np.float64), out=power[pad + 1: pad + 1 + len(audio)])
    power[pad + 1 + len(audio):] = power[pad + len(audio)] if len(audio) else 0.0
    n_frames = 1 + len(audio) // hop_length
    starts = np.arange(n_frames) * hop_length
    sums = power[starts + frame_length] - power[starts]
    return np.sqrt(np.maximum(sums, 0.0) / frame_length)


def non_silent_intervals(audio: np.ndarray, top_db: float = TOP_DB, frame_length: int = FRAME_LENGTH,
                         hop_length: int = HOP_LENGTH) -> np.ndarray:
    """Sample intervals whose frames are within `top_db` dB of the loudest frame (`librosa.effects.split`).

    Args:
        audio: float32 [n_samples], mono.

    Returns:
        int64 [n_intervals, 2]: [start, end) in samples, end clipped to n_samples.
    """
    rms = frame_rms(audio, frame_length, hop_length)
    db = 20.0 * np.log10(np.maximum(AMIN, rms)) - 20.0 * np.log10(max(AMIN, float(rms.max(initial=0.0))))
    loud = db > -top_db
    edges = np.flatnonzero(np.diff(loud.astype(np.int8))) + 1
    if loud[0]:
        edges = np.concatenate([[0], edges])
    if loud[-1]:
        edges = np.concatenate([edges, [len(loud)]])
    samples = np.minimum(edges.astype(np.int64) * hop_length, len(audio))
    return samples.reshape(-1, 2)


def silence_stats(intervals_s: np.ndarray) -> dict[str, float]:
    """Statistics of non-silent intervals (see the module docstring).

    Args:
        intervals_s: float64 [n_intervals, 2], sorted, disjoint [start_s, end_s] in seconds.

    Returns:
        dict with the `STAT_COLUMNS` keys, in seconds (silence_percentage in %).
    """
    if len(intervals_s) == 0:
        return dict.fromkeys(STAT_COLUMNS, 0.0)
    start, end = float(intervals_s[0, 0]), float(intervals_s[-1, 1])
    effective = end - start
    non_silence = float(np.sum(intervals_s[:, 1] - intervals_s[:, 0]))
    gaps = intervals_s[1:, 0] - intervals_s[:-1, 1]
    mid_silence = max(0.0, effective - non_silence)
    return {"audio_start": start, "audio_end": end, "effective_clip_length": effective,
            "mid_silence_length": mid_silence, "non_silence_length": non_silence,
            "max_silence_length": float(gaps.max(initial=0.0)),
            "silence_percentage": 100.0 * mid_silence / effective if effective > 0 else 0.0}


def analyse_audio(audio: np.ndarray, sample_rate: int, top_db: float = TOP_DB) -> dict[str, object]:
    """Analysis columns (`ANALYSIS_COLUMNS`) of one mono float32 [n_samples] signal at `sample_rate` Hz."""
    intervals_s = non_silent_intervals(audio, top_db) / float(sample_rate)
    stats = silence_stats(intervals_s)
    stats["non_silent_intervals"] = json.dumps([[round(a, 6), round(b, 6)] for a, b in intervals_s.tolist()])
    return stats


def analyse_file(path: str) -> dict[str, object] | str:
    """Decode and analyse one file; a decode failure returns its one-line reason instead of raising."""
    try:
        audio, sample_rate = load_audio(path)
    except (DataFormatError, MissingInputError) as err:
        return f"decode_failed: {err}"
    return analyse_audio(audio, sample_rate)


# ---- the stage ----
@dataclass(frozen=True)
class Filters:
    """Keep rules; each applies only when not None."""
    min_size: int | None = None              # bytes; keep file_size > min_size (strict)
    trim_length_s: float | None = None       # keep effective_clip_length >= trim_length_s
    tot_silence_s: float | None = None       # keep mid_silence_length <= tot_silence_s
    max_silence_s: float | None = None       # keep max_silence_length <= max_silence_s


def read_checkpoint(path: Path, file_paths: pd.Series) -> list[dict | str | None]:
    """Results an interrupted run already computed for `file_paths` (None where there is none)."""
    done = read_partial(path)
    if done:
        log.info("silence: resuming %d analyses from %s", len(done), path)
    return [done.get(p) for p in file_paths]


def read_input(path: str | Path) -> pd.DataFrame:
    """Read wrangle.csv (or an earlier silence output); raise a one-line error if a column is missing."""
    path = require_file(path, "wrangle.csv")
    try:
        table = pd.read_csv(path, dtype={"file_path": str, "track_id": str, "artist_id": str,
                                         "non_silent_intervals": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: not a readable CSV ({str(err).splitlines()[0]}); rerun msd/wrangle.py") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataFormatError(f"{path}: missing columns {missing}; expected wrangle.csv from msd/wrangle.py")
    return table


def run(input_csv: str | Path, output: str | Path, *, root_dir: str | Path, filters: Filters = Filters(),
        jobs: int = 1, overwrite: bool = False, quiet: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Analyse, filter and write `output` and its `.dropped.csv` atomically.

    Returns:
        (kept, dropped) tables as written.
    """
    inputs = [(input_csv, "input table")]
    output = check_output(output, MASTER_CSV_KIND, overwrite=overwrite, inputs=inputs)
    dropped_out = check_output(dropped_path(output), DROP_REPORT, overwrite=overwrite, inputs=inputs)
    root = require_dir(root_dir, "audio root")
    start = time.perf_counter()
    table = read_input(input_csv).drop(columns=["mp3_path", "reason"], errors="ignore")
    for column in ANALYSIS_COLUMNS:
        if column not in table.columns:
            table[column] = np.nan
    table["non_silent_intervals"] = table["non_silent_intervals"].astype(object)
    reason = pd.Series(pd.NA, index=table.index, dtype="string")
    if filters.min_size is not None:
        reason[(table["file_size"] <= filters.min_size).to_numpy()] = "too_small"

    def store(index, result: dict | str) -> None:
        if isinstance(result, str):
            reason[index] = result
        else:
            for column, value in result.items():
                table.at[index, column] = value

    todo = table.index[reason.isna().to_numpy() & table[ANALYSIS_COLUMNS].isna().any(axis=1).to_numpy()]
    checkpoint = partial_path(output)
    for index, result in zip(todo, read_checkpoint(checkpoint, table.loc[todo, "file_path"])):
        if result is not None:
            store(index, result)
    todo = todo[(reason.loc[todo].isna() & table.loc[todo, "audio_start"].isna()).to_numpy()]
    n_resumed = int(reason.isna().sum()) - len(todo)
    paths = [str(root / p) for p in table.loc[todo, "file_path"]]
    with open(checkpoint, "a", encoding="utf-8") as log_file:
        for n_done, (index, result) in enumerate(zip(todo, parallel_map(analyse_file, paths, jobs=jobs,
                                                                         desc="silence", quiet=quiet)), 1):
            store(index, result)
            log_file.write(json.dumps([table.at[index, "file_path"], result]) + "\n")
            if n_done % 256 == 0:
                log_file.flush()

    def drop_if(mask: pd.Series, name: str) -> None:
        reason[mask.to_numpy() & reason.isna().to_numpy()] = name

    if filters.trim_length_s is not None:
        drop_if(table["effective_clip_length"] < filters.trim_length_s, "too_short")
    if filters.tot_silence_s is not None:
        drop_if(table["mid_silence_length"] > filters.tot_silence_s, "too_much_silence")
    if filters.max_silence_s is not None:
        drop_if(table["max_silence_length"] > filters.max_silence_s, "long_silence")

    front = ["track_id", "artist_id", "mp3_path"]
    table.insert(2, "mp3_path", table["file_path"])
    rest = [c for c in table.columns if c not in front and c not in ANALYSIS_COLUMNS]
    table = table[front + rest + ANALYSIS_COLUMNS]
    kept = table[reason.isna().to_numpy()].reset_index(drop=True)
    dropped = table[reason.notna().to_numpy()].assign(reason=reason[reason.notna()].to_numpy())
    dropped = dropped.reset_index(drop=True)
    with atomic_path(output) as tmp:
        kept.to_csv(tmp, index=False)
    with atomic_path(dropped_out) as tmp:
        dropped.to_csv(tmp, index=False)
    checkpoint.unlink(missing_ok=True)
    log.info("silence: analysed %d, resumed %d, kept %d of %d in %.1f s", len(todo), n_resumed, len(kept),
             len(table), time.perf_counter() - start)
    return kept, dropped


def format_summary(kept: pd.DataFrame, dropped: pd.DataFrame, output: str | Path) -> str:
    """The printed per-reason summary (decode failures grouped)."""
    reasons = dropped["reason"].str.split(":").str[0].value_counts() if len(dropped) else pd.Series(dtype=int)
    return format_drop_summary("silence", len(kept), sorted(reasons.items()), output)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus silence", "Measure each track's silences (60 dB below its loudest frame) and drop unusable tracks.",
        "examples:\n"
        "  orpheus silence wrangle.csv ultimate.csv --root-dir AUDIO_ROOT --min-size 100000 \\\n"
        "         --filter-trim-length 15 --filter-tot-silence 3 --filter-max-silence 1\n"
        "  orpheus silence wrangle.csv analysed.csv --root-dir AUDIO_ROOT          # analyse only\n"
        "  orpheus silence analysed.csv ultimate.csv --root-dir AUDIO_ROOT --filter-trim-length 15"
        "   # refilter, no decoding")
    parser.add_argument("input", help="wrangle.csv (or an earlier output of this command: no re-decoding)")
    parser.add_argument("output", help="ultimate.csv to write (dropped rows go to <stem>.dropped.csv beside it)")
    parser.add_argument("--root-dir", required=True, help="audio root that file_path is relative to")
    parser.add_argument("--min-size", type=int, help="drop files of at most this many bytes (strict: keep > N)")
    parser.add_argument("--filter-trim-length", type=float,
                        help="drop tracks whose effective length (first to last sound) is under this many seconds")
    parser.add_argument("--filter-tot-silence", type=float,
                        help="drop tracks with more than this many seconds of silence in total between sounds")
    parser.add_argument("--filter-max-silence", type=float,
                        help="drop tracks with a single silence longer than this many seconds")
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        filters = Filters(args.min_size, args.filter_trim_length, args.filter_tot_silence, args.filter_max_silence)
        kept, dropped = run(args.input, args.output, root_dir=args.root_dir, filters=filters, jobs=args.jobs,
                            overwrite=args.overwrite, quiet=args.quiet)
        print(format_summary(kept, dropped, args.output))
        return 0

    return run_main(parser, argv, command)
