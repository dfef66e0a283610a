"""The preprocessing stage's test corpus: a tiny corpus in the real formats (mp3s encoded with soundfile, an
ultimate.csv, a clean_lastfm.db with the real three-table schema), the reference log-mel run made from it, and
a miniature MSD cleaned by the four cleaning commands."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from orpheus.formats import dataset as datasets
from orpheus.formats import tfrecord as spec
from tests.fixtures_msd import write_lastfm_db
from tfrecords import preprocessing as pp

RATE = 8000  # low sample rate keeps decoding and features fast
TAGS = ["rock", "jazz", "ambient", "female vocalists"]  # ROWID order, deliberately not sorted
# track id -> (artist, seconds, tags); special cases: corrupt, short, untagged, missing
CORPUS = {
    "TR01": ("AR1", 16.0, ["rock"]),
    "TR02": ("AR1", 17.0, ["rock", "female vocalists"]),
    "TR03": ("AR2", 16.5, ["jazz"]),
    "TR04": ("AR2", 18.0, ["jazz", "ambient"]),
    "TR05": ("AR3", 16.0, ["ambient"]),
    "TR06": ("AR3", 17.5, ["rock", "jazz"]),
    "TR07": ("AR4", 16.0, ["female vocalists"]),
    "TR08": ("AR5", 19.0, ["rock"]),
    "TR09": ("AR6", 16.0, ["jazz"]),
    "TR10": ("AR7", 16.0, ["ambient", "rock"]),
    "TRBAD": ("AR8", 16.0, ["rock"]),      # corrupt mp3
    "TRSHORT": ("AR8", 5.0, ["rock"]),     # shorter than one 15 s window
    "TRNOTAG": ("AR9", 16.0, []),          # no clean tag
    "TRGONE": ("AR9", 16.0, ["jazz"]),     # listed but its file is missing
}
GOOD = [tid for tid in CORPUS if tid.startswith("TR") and tid[2:].isdigit()]


def _signal(seed: int, seconds: float) -> np.ndarray:
    """Seeded music-like stereo signal: a few decaying harmonic notes plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    mono = 0.02 * rng.standard_normal(t.size)
    for onset in np.arange(0, seconds, 0.5):
        f0 = rng.choice([110, 165, 220, 330, 440, 660])
        env = np.where(t >= onset, np.exp(-(t - onset) * 4), 0)
        mono += 0.2 * env * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
    return np.stack([mono, 0.8 * mono], axis=1).astype(np.float32) * 0.5


def build_corpus(root):
    """Write audio/, ultimate.csv and clean_lastfm.db under `root`; returns the CLI input arguments."""
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True)
    rows = []
    for seed, (tid, (artist, seconds, _)) in enumerate(sorted(CORPUS.items())):
        rel = f"{tid[-1]}/{tid}.clip.mp3"
        (audio_dir / rel).parent.mkdir(exist_ok=True)
        if tid == "TRBAD":
            (audio_dir / rel).write_bytes(np.random.default_rng(seed).bytes(6000))
        elif tid != "TRGONE":
            sf.write(audio_dir / rel, _signal(seed, seconds), RATE)
        # a trimmed span for TR08 (19 s file, 0.5 .. 18.0 s kept), as the cleaning stage records it
        start, end = ("0.5", "18.0") if tid == "TR08" else ("", "")
        rows.append({"track_id": tid, "artist_id": artist, "mp3_path": rel, "audio_start": start, "audio_end": end})
    with open(root / "ultimate.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tids = ["TRUNLISTED", *sorted(CORPUS)]   # TRUNLISTED: in the database, not in the csv
    pairs = [(rowid, TAGS.index(t) + 1, 50.0) for rowid, tid in enumerate(tids, start=1) if tid in CORPUS
             for t in CORPUS[tid][2]]
    write_lastfm_db(root / "clean_lastfm.db", tids, TAGS, pairs)
    return ["--csv-path", str(root / "ultimate.csv"), "--tag-path", str(root / "clean_lastfm.db"),
            "--root-dir", str(audio_dir)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, build_corpus(root)


SPLIT = ("40", "30", "30")  # with these artist ids every split gets tracks (train AR1 AR2 AR7 AR8 AR9, ...)


def _cli(fmt, out_dir, inputs, *extra):
    split = [] if "--split-file" in extra or "--split" in extra else ["--split", *SPLIT]
    return pp.main([fmt, str(out_dir), *inputs, "--sample-rate", str(RATE), "--num-files", "4", "--jobs", "1", "--quiet",
                    *split, *extra])


def _read_shards(out_dir):
    info = datasets.read_dataset_info(out_dir)
    parse = spec.parse_fn(info.spec())
    examples = {}
    for split in datasets.SPLITS:
        for path in datasets.shard_paths(out_dir, split):
            for record in tf.data.TFRecordDataset(path):
                ex = {k: v.numpy() for k, v in parse(record).items()}
                examples[ex["tid"].decode()] = dict(ex, split=split, shard=os.path.basename(path))
    return info, examples


def _expected_multi_hot(tid):
    return np.array([int(t in CORPUS[tid][2]) for t in TAGS])


def _snapshot(out_dir):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out_dir.glob("*.tfrecord"))}


@pytest.fixture(scope="module")
def logmel_run(corpus, tmp_path_factory):
    root, inputs = corpus
    out = tmp_path_factory.mktemp("logmel")
    assert _cli("log-mel-spectrogram", out, inputs) == 0
    return out


def clean_miniature_msd(tmp_path, *, tracks, seed, duration_s):
    """msd.miniature.synthetic_msd -> fetcher, wrangle, silence, lastfm_cleaning as a user runs them; returns (msd, clean)."""
    from msd import fetcher, lastfm_cleaning, silence, wrangle
    from msd.miniature import synthetic_msd as synthetic

    msd, clean = tmp_path / "msd", tmp_path / "clean"
    clean.mkdir()
    assert synthetic.main([str(msd), "--tracks", str(tracks), "--seed", str(seed), "--duration-s", str(duration_s),
                           "--jobs", "2", "--quiet"]) == 0
    assert fetcher.main([str(clean / "fetcher.csv"), "--root-dir", str(msd / "audio"), "--quiet"]) == 0
    assert wrangle.main([str(clean / "fetcher.csv"), str(clean / "wrangle.csv"), "--path-h5",
                         str(msd / "msd_summary_file.h5"), "--path-db", str(msd / "lastfm_tags.db"),
                         "--path-txt-mism", str(msd / "sid_mismatches.txt"), "--path-txt-dupl",
                         str(msd / "msd_duplicates.txt"), "--discard-no-tag", "--discard-dupl", "--quiet"]) == 0
    assert silence.main([str(clean / "wrangle.csv"), str(clean / "ultimate.csv"), "--root-dir", str(msd / "audio"),
                         "--min-size", "100000", "--filter-trim-length", "15", "--filter-tot-silence", "3",
                         "--filter-max-silence", "1", "--quiet"]) == 0
    assert lastfm_cleaning.main([str(msd / "lastfm_tags.db"), str(clean / "clean_lastfm.db"), "--quiet"]) == 0
    return msd, clean
