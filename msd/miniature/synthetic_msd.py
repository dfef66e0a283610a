"""A miniature Million Song Dataset in the real formats, with music a model can really learn.

    orpheus synthetic OUT_DIR --tracks 300 --seed 0 [--duration-s 30] [--jobs 2]

writes into OUT_DIR:

- `msd_summary_file.h5`: groups `metadata`, `analysis`, `musicbrainz`, each one compound dataset
  `songs` with the real MSD field names and dtypes (fixed-length byte strings, int32, float64);
  rows are aligned across the three groups. Most rows have no audio, as in the real file.
- `lastfm_tags.db`: the Last.fm tag database schema `tids(tid TEXT)`, `tags(tag TEXT)`,
  `tid_tag(tid INT, tag INT, val FLOAT)` (ids are ROWIDs, val 0..100), with the real mess:
  case/spelling/punctuation variants, synonyms, decades, junk tags and zero values (see
  `RAW_TAG_VARIANTS` and `JUNK_TAGS` for which raw strings mean which clean tag).
- `sid_mismatches.txt`: `ERROR: <SOxxxxxxxxxxxxxxxx TRxxxxxxxxxxxxxxxx> artist  -  title  !=  artist  -  title`.
- `msd_duplicates.txt`: `#` header lines, then groups opened by `%<id> <artist> - <title>`, one
  track id per line.
- `audio/<d0>/<d1>/<track_7digitalid>.clip.mp3`: 30 s, 44.1 kHz stereo mp3 previews (d0, d1 = first
  two digits of the 7digital id), rendered by `msd.miniature.music_synth` from each track's clean tags.
- `truth.csv`: the ground truth for tests and the demo, one row per audio file:
  track_id, track_7digitalid, artist_id, mp3_path (relative to `audio/`), fault, tags (the clean tags
  the audio was rendered from, `;`-separated; the tag database deliberately lacks them for the
  `untagged` and `no_clean_tag` faults).

Faults (`FAULT_KINDS`; at least one of each when there are 40 tracks or more, scaling with N):

| fault        | what the cleaning must catch                                                   |
|--------------|--------------------------------------------------------------------------------|
| zero_byte    | an empty mp3 file                                                              |
| corrupt      | an mp3 file of random bytes                                                    |
| no_summary   | audio whose 7digital id has no summary row (track_id and artist_id empty)      |
| ambiguous    | a 7digital id shared by two summary rows                                       |
| mismatch     | the track is listed in sid_mismatches.txt                                      |
| duplicate    | in a duplicate group and not its smallest surviving track id (which is healthy)|
| untagged     | the track is absent from lastfm_tags.db                                        |
| silence      | 6 s of digital silence in the middle (dropped by --filter-tot-silence 3 and    |
|              | --filter-max-silence 1)                                                        |
| short        | an 8 s clip, > 100,000 bytes (dropped by --filter-trim-length 15)              |
| no_clean_tag | only junk tags: survives cleaning, skipped by preprocessing                    |

Healthy tracks have no silence longer than a few milliseconds (frames within 60 dB of the loudest)
and are larger than 100,000 bytes. Everything is deterministic for a seed: the h5/db/txt/csv bytes
and the mp3 audio.

The world (rows, tags, faults) is drawn in `msd.miniature.msd_world`, its files are written by
`msd.miniature.msd_writers`; this module is the stage that runs them (`generate`) and its command.
"""

import os

import argparse
import logging
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from msd.miniature.msd_world import (
    FAULT_KINDS, MIN_DURATION_S, SHORT_CLIP_S, TRUTH_COLUMNS, AudioJob, SyntheticMSD, audio_relpath, build_world)
from msd.miniature.msd_writers import (
    duplicates_text, mismatch_text, write_audio_job, write_summary, write_tags_db)
from orpheus.cli import add_common_args, default_jobs, make_parser, run_main
from orpheus.errors import ConfigError, OutputExistsError
from msd.miniature import CORPUS, start_corpus
from orpheus.files import write_csv_atomic, write_text_atomic
from orpheus.ownership import MARKER, claim
from orpheus.parallel import parallel_map

log = logging.getLogger(__name__)


log = logging.getLogger(__name__)


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    claim(out_dir, CORPUS, resume=True, flag="OUT_DIR")   # never a folder Orpheus did not write
    if out_dir.is_dir() and any(p.name != MARKER for p in out_dir.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out_dir}: folder is not empty; pass --overwrite to replace the miniature MSD")
        shutil.rmtree(out_dir / "audio", ignore_errors=True)  # stale previews would join the new world
        for name in ("msd_summary_file.h5", "lastfm_tags.db", "sid_mismatches.txt", "msd_duplicates.txt",
                     "truth.csv"):
            (out_dir / name).unlink(missing_ok=True)
    start_corpus(out_dir)


def generate(out_dir: str | os.PathLike, n_tracks: int, seed: int, duration_s: float = 30.0,
             jobs: int | None = None, quiet: bool = False, overwrite: bool = False,
             audio: bool = True) -> SyntheticMSD:
    """Write a miniature MSD with `n_tracks` audio previews into `out_dir` (see the module docstring).

    Args:
        out_dir: an empty or missing folder (or any folder with `overwrite`).
        n_tracks: number of audio files (faulty ones included); >= 1.
        seed: the world's seed; the same seed gives the same files.
        duration_s: length of the healthy previews in seconds, >= MIN_DURATION_S (10); use 16 or more
            for the cleaning's `--filter-trim-length 15`.
        jobs: worker processes for rendering and encoding (default: all cores).
        quiet: hide the progress bar.
        overwrite: replace the outputs of an earlier run in `out_dir`.
        audio: write the mp3 tree; without it only the metadata files and truth.csv are written
            (fast, for tests and benchmarks of the metadata rules).

    Raises:
        ConfigError: bad `n_tracks` or `duration_s`.
        OutputExistsError: `out_dir` is not empty and `overwrite` is false.
    """
    if n_tracks < 1:
        raise ConfigError(f"--tracks must be at least 1, got {n_tracks}")
    if duration_s < MIN_DURATION_S:
        raise ConfigError(f"--duration-s must be at least {MIN_DURATION_S:g} s (longer than the {SHORT_CLIP_S:g} s "
                          f"short-clip fault), got {duration_s:g}")
    if duration_s < 16:
        log.warning("previews of %g s are shorter than the cleaning's usual --filter-trim-length 15 allows; "
                    "use --duration-s 16 or more for an end-to-end run", duration_s)
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    rows, artists, groups, mismatches = build_world(n_tracks, seed)
    rng = np.random.default_rng([seed, 0x746167])
    summary_rows = [rows[int(i)] for i in rng.permutation(len(rows)) if rows[int(i)].in_summary]
    msd = SyntheticMSD(root=out_dir, summary_h5=out_dir / "msd_summary_file.h5", tags_db=out_dir / "lastfm_tags.db",
                       mismatches_txt=out_dir / "sid_mismatches.txt", duplicates_txt=out_dir / "msd_duplicates.txt",
                       audio_dir=out_dir / "audio", truth_csv=out_dir / "truth.csv", n_tracks=n_tracks)
    write_summary(msd.summary_h5, summary_rows, artists, rng)
    write_tags_db(msd.tags_db, rows, rng)
    write_text_atomic(msd.mismatches_txt, mismatch_text(mismatches, artists))
    write_text_atomic(msd.duplicates_txt, duplicates_text(groups, artists, seed))

    audio_rows = sorted((r for r in rows if r.has_audio), key=lambda r: r.digital_id)
    audio_jobs = [AudioJob(str(msd.audio_dir / audio_relpath(r.digital_id)), r.tags, r.audio_seed, duration_s,
                           r.fault) for r in audio_rows]
    if audio:
        sizes = list(parallel_map(write_audio_job, audio_jobs, jobs=jobs or default_jobs(),
                                  desc="synthesising previews", quiet=quiet, chunksize=1))
    else:
        sizes = [100_001] * len(audio_jobs)
    healthy_sizes = [s for s, r in zip(sizes, audio_rows) if r.fault == ""]
    if healthy_sizes and min(healthy_sizes) <= 100_000:
        log.warning("a healthy preview is only %d bytes (<= 100,000): the --min-size filter would drop it",
                    min(healthy_sizes))
    truth = [(r.track_id if r.in_summary else "", r.digital_id, artists[r.artist]["artist_id"] if r.in_summary else "",
              audio_relpath(r.digital_id), r.fault, ";".join(r.tags)) for r in audio_rows]
    write_csv_atomic(msd.truth_csv, TRUTH_COLUMNS, truth)
    counts = {k: sum(r.fault == k for r in audio_rows) for k in FAULT_KINDS}
    log.info("wrote a miniature MSD of %d previews (%d summary rows, faults %s) to %s", n_tracks, len(summary_rows),
             counts, out_dir)
    return msd


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus synthetic", "Generate a miniature Million Song Dataset in the real file formats, with synthesised "
        "music whose content matches its tags and the faults the cleaning stage must catch.",
        "examples:\n"
        "  orpheus synthetic demo_msd --tracks 300 --seed 0\n"
        "  orpheus synthetic /tmp/tiny --tracks 40 --seed 1 --duration-s 20 --jobs 2 --overwrite")
    parser.add_argument("out_dir", type=Path, help="output folder (must be empty unless --overwrite)")
    parser.add_argument("--tracks", type=int, required=True, help="number of audio previews, faulty ones included")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated world")
    parser.add_argument("--duration-s", type=float, default=30.0, help="length of the previews in seconds")
    parser.add_argument("--no-audio", action="store_true",
                        help="write only the metadata files and truth.csv, no mp3 tree")
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def run(args: argparse.Namespace) -> int:
        msd = generate(args.out_dir, args.tracks, args.seed, duration_s=args.duration_s, jobs=args.jobs,
                       quiet=args.quiet, overwrite=args.overwrite, audio=not args.no_audio)
        print(f"miniature MSD written to {msd.root} ({msd.n_tracks} previews; ground truth in {msd.truth_csv.name})")
        return 0

    return run_main(parser, argv, run)
