"""A miniature Million Song Dataset in the real formats, with music a model can really learn.

    python -m msd.synthetic OUT_DIR --tracks 300 --seed 0 [--duration-s 30] [--jobs 2]

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
  two digits of the 7digital id), rendered by `msd.music_synth` from each track's clean tags.
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
"""

import os
import sys

if __name__ == "__main__":  # a command: no TensorFlow log lines unless --verbose (before anything imports it)
    from orpheus.cli import quiet_tensorflow

    quiet_tensorflow()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Sequence  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from msd.miniature import music_synth  # noqa: E402
from orpheus.cli import add_common_args, default_jobs, make_parser, run_main  # noqa: E402
from orpheus.errors import ConfigError, OutputExistsError  # noqa: E402
from orpheus.files import atomic_path, write_csv_atomic, write_text_atomic  # noqa: E402
from orpheus.parallel import parallel_map  # noqa: E402

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100
FAULT_KINDS = ("zero_byte", "corrupt", "no_summary", "ambiguous", "mismatch", "duplicate", "untagged",
               "silence", "short", "no_clean_tag")
SILENCE_START_S, SILENCE_LENGTH_S = 12.0, 6.0
SHORT_CLIP_S = 8.0
MIN_DURATION_S = 10.0
TRUTH_COLUMNS = ("track_id", "track_7digitalid", "artist_id", "mp3_path", "fault", "tags")

# Raw Last.fm spellings of each clean tag, most common first. Each maps to its clean tag by the
# cleaning rules (lower-case; strip non-alphanumerics and a trailing "s"; decades) or by the
# common-sense synonym lists (electronica, "... music", "female vocalists", ...).
RAW_TAG_VARIANTS: dict[str, tuple[str, ...]] = {
    "rock": ("rock", "Rock", "ROCK", "rock!", "Rocks"),
    "metal": ("metal", "Metal", "METAL", "Metal!"),
    "electronic": ("electronic", "Electronic", "electronica", "Electronica", "electronic music"),
    "dance": ("dance", "Dance", "DANCE", "dance music"),
    "jazz": ("jazz", "Jazz", "JAZZ", "jazz."),
    "classical": ("classical", "Classical", "CLASSICAL", "classical music"),
    "ambient": ("ambient", "Ambient", "AMBIENT", "ambient music"),
    "hip hop": ("hip hop", "Hip-Hop", "hip-hop", "hiphop", "HIP HOP", "Hip Hop"),
    "folk": ("folk", "Folk", "FOLK", "folk music"),
    "pop": ("pop", "Pop", "POP", "pop music"),
    "female": ("female vocalists", "female vocalist", "Female Vocalists", "female vocals", "female"),
    "male": ("male vocalists", "male vocalist", "Male Vocalists", "male vocals", "male"),
    "rap": ("rap", "Rap", "RAP", "raps"),
    "instrumental": ("instrumental", "Instrumental", "instrumentals", "INSTRUMENTAL"),
    "80s": ("80s", "80's", "1980s", "eighties", "Eighties"),
    "90s": ("90s", "90's", "1990s", "nineties", "Nineties"),
}
# Personal and descriptive tags that are no genre: the cleaning drops them all.
JUNK_TAGS = ("seen live", "favorites", "Favorite", "favourites", "awesome", "beautiful", "love", "loved",
             "my favorite", "albums i own", "check out", "good", "amazing", "cool", "under 2000 listeners",
             "want to see live", "fav", "epic")

_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
_SYLLABLES = ("ka", "lo", "mi", "ra", "ve", "son", "dar", "el", "tin", "mor", "bel", "ish", "no", "qua", "zen",
              "ly", "fa", "gor", "vin", "sa", "te", "rum", "ho", "pa", "cle", "dra", "mon", "ari", "us", "wen")
_WORDS = ("night", "river", "fire", "heart", "city", "dream", "light", "road", "stone", "rain", "sun", "shadow",
          "echo", "glass", "summer", "ghost", "wild", "silver", "blue", "golden", "lost", "electric", "velvet",
          "midnight", "ocean", "machine", "paper", "winter", "honey", "thunder", "garden", "mirror", "north")


@dataclass(frozen=True)
class SyntheticMSD:
    """Paths of a generated miniature MSD (all under `root`)."""

    root: Path
    summary_h5: Path
    tags_db: Path
    mismatches_txt: Path
    duplicates_txt: Path
    audio_dir: Path
    truth_csv: Path
    n_tracks: int


@dataclass
class _Row:
    """One summary row (with or without audio)."""

    track_id: str
    song_id: str
    artist: int
    title: str
    release: str
    digital_id: int
    year: int
    tags: tuple[str, ...]
    fault: str = ""
    has_audio: bool = False
    in_summary: bool = True
    tagged: bool = True
    audio_seed: int = 0


@dataclass(frozen=True)
class AudioJob:
    """One mp3 to write: `render_track(tags, seed)` then the fault, encoded to `path`."""

    path: str
    tags: tuple[str, ...]
    seed: int
    duration_s: float
    fault: str


# ---------------------------------------------------------------------------------------------
# Names and ids
# ---------------------------------------------------------------------------------------------

def _msd_id(rng: np.random.Generator, prefix: str, taken: set[str]) -> str:
    """An MSD-style id: the 2-letter prefix and 16 upper-case letters/digits, unique in `taken`."""
    while True:
        new = prefix + "".join(rng.choice(_ID_ALPHABET, 16))
        if new not in taken:
            taken.add(new)
            return new


def _name(rng: np.random.Generator, n_syllables: tuple[int, int] = (2, 3)) -> str:
    return "".join(rng.choice(_SYLLABLES, int(rng.integers(*n_syllables)))).capitalize()


def _artist_name(rng: np.random.Generator) -> str:
    style = rng.random()
    if style < 0.4:
        return f"{_name(rng)} {_name(rng)}"
    if style < 0.7:
        return "The " + " ".join(w.capitalize() for w in rng.choice(_WORDS, 2, replace=False)) + "s"
    if style < 0.85:
        return f"DJ {_name(rng)}"
    return f"{_name(rng)} & the {str(rng.choice(_WORDS)).capitalize()}s"


def _title(rng: np.random.Generator) -> str:
    words = [str(w) for w in rng.choice(_WORDS, int(rng.integers(1, 4)), replace=False)]
    if rng.random() < 0.3:
        words.insert(0, str(rng.choice(["the", "my", "no", "into the", "all"])))
    return " ".join(w.capitalize() for w in words)


def _uuid(rng: np.random.Generator) -> str:
    h = "".join(rng.choice(list("0123456789abcdef"), 32))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def audio_relpath(digital_id: int) -> str:
    """Where a 7digital preview lives under the audio root: `<d0>/<d1>/<id>.clip.mp3`."""
    digits = str(digital_id)
    return f"{digits[0]}/{digits[1]}/{digits}.clip.mp3"


def _stable_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little")


# ---------------------------------------------------------------------------------------------
# The world: artists, tracks, faults
# ---------------------------------------------------------------------------------------------

def fault_plan(n_tracks: int) -> list[str]:
    """The fault of each audio track, before shuffling: `n // 40` of each kind (at least one when
    n >= 40; for fewer tracks, one each of the first n // 4 kinds), the rest healthy ("")."""
    if n_tracks >= 40:
        kinds = [k for k in FAULT_KINDS for _ in range(max(1, n_tracks // 40))]
    else:
        kinds = list(FAULT_KINDS[:n_tracks // 4])
    return kinds + [""] * (n_tracks - len(kinds))


def _build_world(n_tracks: int, seed: int) -> tuple[list[_Row], list[dict], list[list[_Row]],
                                                   list[tuple[_Row, str, str]]]:
    """Rows (audio and not), artists, duplicate groups and mismatch pairs for a seed."""
    rng = np.random.default_rng([seed, 0x4D5344])
    taken: set[str] = set()
    n_artists = max(2, n_tracks // 4)
    artists = []
    for _ in range(n_artists):
        artists.append({"artist_id": _msd_id(rng, "AR", taken), "name": _artist_name(rng), "mbid": _uuid(rng),
                        "tags": music_synth.draw_tags(rng), "releases": [_title(rng) for _ in range(3)],
                        "familiarity": float(rng.beta(4, 3)), "hotttnesss": float(rng.beta(3, 5)),
                        "digital_id": int(rng.integers(1000, 900000)),
                        "location": str(rng.choice(["London, England", "Chicago, IL", "Berlin, Germany", "",
                                                    "Montreal, Quebec", "Tokyo, Japan", ""]))})
    digital_ids = iter(rng.choice(np.arange(1_000_000, 9_999_999), size=4 * n_tracks + 200, replace=False).tolist())

    def new_row(artist: int, tags: tuple[str, ...]) -> _Row:
        if "80s" in tags:
            year = int(rng.integers(1980, 1990))
        elif "90s" in tags:
            year = int(rng.integers(1990, 2000))
        else:
            year = 0 if rng.random() < 0.4 else int(rng.integers(1960, 2011))
        return _Row(track_id=_msd_id(rng, "TR", taken), song_id=_msd_id(rng, "SO", taken), artist=artist,
                    title=_title(rng), release=str(rng.choice(artists[artist]["releases"])),
                    digital_id=next(digital_ids), year=year, tags=tags)

    def track_tags(artist: int) -> tuple[str, ...]:
        # Artists keep to their style; now and then a track strays from it.
        return tuple(artists[artist]["tags"] if rng.random() < 0.6 else music_synth.draw_tags(rng))

    faults = [str(f) for f in rng.permutation(np.array(fault_plan(n_tracks), dtype=object))]
    audio_rows = []
    for i, fault in enumerate(faults):
        artist = int(rng.integers(n_artists)) if i >= n_artists else i
        row = new_row(artist, track_tags(artist))
        row.fault, row.has_audio = fault, True
        row.audio_seed = _stable_seed(seed, "audio", i)
        row.in_summary = fault != "no_summary"
        row.tagged = fault != "untagged"
        audio_rows.append(row)
    extra_rows = []
    n_plain = 2 * n_tracks + 20
    for _ in range(n_plain):  # the summary file has many more songs than previews
        artist = int(rng.integers(n_artists))
        row = new_row(artist, track_tags(artist))
        row.tagged = rng.random() < 0.5
        extra_rows.append(row)

    # Ambiguous: a second summary row (another song) claims the same 7digital id.
    for row in [r for r in audio_rows if r.fault == "ambiguous"]:
        twin = new_row(int(rng.integers(n_artists)), tuple(music_synth.draw_tags(rng)))
        twin.digital_id = row.digital_id
        extra_rows.append(twin)

    # Duplicates: the same song (artist and title) under several track ids. The kept member, the
    # smallest track id, is a healthy track; audio-less members are added as in the real list.
    healthy = [r for r in audio_rows if r.fault == ""]
    groups: list[list[_Row]] = []
    for row in [r for r in audio_rows if r.fault == "duplicate"]:
        keeper = healthy.pop(int(rng.integers(len(healthy)))) if healthy else None
        if keeper is None:
            raise ConfigError("too few healthy tracks to build duplicate groups; generate more tracks")
        row.artist, row.title, row.tags, row.audio_seed = keeper.artist, keeper.title, keeper.tags, keeper.audio_seed
        members = [keeper, row]
        if rng.random() < 0.5:
            ghost = new_row(keeper.artist, keeper.tags)
            ghost.title = keeper.title
            extra_rows.append(ghost)
            members.append(ghost)
        ids = sorted([keeper.track_id, row.track_id])
        keeper.track_id, row.track_id = ids  # the healthy member holds the smaller id
        groups.append(members)
    # Groups and mismatches among songs without previews use only plain rows (no twin, no group
    # member), so that no track's fate depends on the order in which the cleaning applies its rules.
    plain = rng.permutation(n_plain)
    for k in range(max(2, n_tracks // 10)):
        first, second = int(plain[2 * k]), int(plain[2 * k + 1])
        extra_rows[second].artist, extra_rows[second].title = extra_rows[first].artist, extra_rows[first].title
        groups.append([extra_rows[first], extra_rows[second]])
    # Mismatches: the 7digital preview is another song (MSD artist/title != 7digital artist/title).
    mismatches = []
    mismatch_rows = [r for r in audio_rows if r.fault == "mismatch"]
    mismatch_rows += [extra_rows[int(i)] for i in plain[-max(2, n_tracks // 10):]]
    for row in mismatch_rows:
        mismatches.append((row, _artist_name(rng), _title(rng)))
    return audio_rows + extra_rows, artists, groups, mismatches


def _raw_tags(rng: np.random.Generator, row: _Row) -> list[tuple[str, float]]:
    """Last.fm-style raw (tag, val) pairs for a row's clean tags, with variants, junk and zeros."""
    pairs: list[tuple[str, float]] = []
    if row.fault != "no_clean_tag":
        for i, clean in enumerate(row.tags):
            variants = RAW_TAG_VARIANTS[clean]
            weights = np.array([4.0] + [1.0] * (len(variants) - 1))
            chosen = rng.choice(len(variants), size=int(rng.integers(1, min(3, len(variants)) + 1)), replace=False,
                                p=weights / weights.sum())
            for j, v in enumerate(chosen):
                val = 100.0 if i == 0 and j == 0 else float(rng.integers(10, 101))
                pairs.append((variants[int(v)], val))
            if rng.random() < 0.15:  # a redundant spelling nobody voted for
                pairs.append((variants[int(rng.integers(len(variants)))], 0.0))
    n_junk = int(rng.integers(1, 4)) if row.fault == "no_clean_tag" else int(rng.poisson(1.2))
    for tag in rng.choice(JUNK_TAGS, size=min(n_junk, len(JUNK_TAGS)), replace=False):
        pairs.append((str(tag), float(rng.choice([0, rng.integers(1, 101)]))))
    if row.fault == "no_clean_tag" and all(v == 0 for _, v in pairs):
        pairs[0] = (pairs[0][0], 50.0)
    seen: dict[str, float] = {}
    for tag, val in pairs:  # one value per (track, tag), as in the real database
        seen.setdefault(tag, val)
    return list(seen.items())


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------

def _summary_dtypes() -> dict[str, np.dtype]:
    """The compound dtypes of `metadata/songs`, `analysis/songs` and `musicbrainz/songs`."""
    text = "S256"
    metadata = [("analyzer_version", "S32"), ("artist_7digitalid", "<i4"), ("artist_familiarity", "<f8"),
                ("artist_hotttnesss", "<f8"), ("artist_id", "S18"), ("artist_latitude", "<f8"),
                ("artist_location", text), ("artist_longitude", "<f8"), ("artist_mbid", "S40"),
                ("artist_name", text), ("artist_playmeid", "<i4"), ("genre", "S32"), ("idx_artist_terms", "<i4"),
                ("idx_similar_artists", "<i4"), ("release", text), ("release_7digitalid", "<i4"),
                ("song_hotttnesss", "<f8"), ("song_id", "S18"), ("title", text), ("track_7digitalid", "<i4")]
    analysis = [("analysis_sample_rate", "<i4"), ("audio_md5", "S32"), ("danceability", "<f8"), ("duration", "<f8"),
                ("end_of_fade_in", "<f8"), ("energy", "<f8"), ("idx_bars_confidence", "<i4"),
                ("idx_bars_start", "<i4"), ("idx_beats_confidence", "<i4"), ("idx_beats_start", "<i4"),
                ("idx_sections_confidence", "<i4"), ("idx_sections_start", "<i4"),
                ("idx_segments_confidence", "<i4"), ("idx_segments_loudness_max", "<i4"),
                ("idx_segments_loudness_max_time", "<i4"), ("idx_segments_loudness_start", "<i4"),
                ("idx_segments_pitches", "<i4"), ("idx_segments_start", "<i4"), ("idx_segments_timbre", "<i4"),
                ("idx_tatums_confidence", "<i4"), ("idx_tatums_start", "<i4"), ("key", "<i4"),
                ("key_confidence", "<f8"), ("loudness", "<f8"), ("mode", "<i4"), ("mode_confidence", "<f8"),
                ("start_of_fade_out", "<f8"), ("tempo", "<f8"), ("time_signature", "<i4"),
                ("time_signature_confidence", "<f8"), ("track_id", "S18")]
    musicbrainz = [("idx_artist_mbtags", "<i4"), ("year", "<i4")]
    return {"metadata": np.dtype(metadata), "analysis": np.dtype(analysis), "musicbrainz": np.dtype(musicbrainz)}


def _write_summary(path: Path, rows: Sequence[_Row], artists: Sequence[dict], rng: np.random.Generator) -> None:
    dtypes = _summary_dtypes()
    tables = {group: np.zeros(len(rows), dtype=dtype) for group, dtype in dtypes.items()}
    meta, ana, mb = tables["metadata"], tables["analysis"], tables["musicbrainz"]
    for i, row in enumerate(rows):
        artist = artists[row.artist]
        located = rng.random() < 0.4
        meta[i] = (b"", artist["digital_id"], artist["familiarity"], artist["hotttnesss"], artist["artist_id"],
                   rng.uniform(-60, 70) if located else np.nan, artist["location"].encode(),
                   rng.uniform(-150, 150) if located else np.nan, artist["mbid"], artist["name"].encode(), -1, b"",
                   0, 0, row.release.encode(), _stable_seed(row.release) % 900000 + 1000,
                   rng.random() if rng.random() < 0.6 else np.nan, row.song_id, row.title.encode(), row.digital_id)
        duration = float(rng.uniform(120, 420))
        ana[i]["analysis_sample_rate"] = 22050
        ana[i]["audio_md5"] = hashlib.md5(row.track_id.encode()).hexdigest()
        ana[i]["duration"] = duration
        ana[i]["end_of_fade_in"] = rng.uniform(0, 2)
        ana[i]["key"], ana[i]["key_confidence"] = int(rng.integers(12)), rng.random()
        ana[i]["loudness"] = rng.uniform(-25, -3)
        ana[i]["mode"], ana[i]["mode_confidence"] = int(rng.integers(2)), rng.random()
        ana[i]["start_of_fade_out"] = duration - rng.uniform(0, 10)
        ana[i]["tempo"] = rng.uniform(60, 200)
        ana[i]["time_signature"], ana[i]["time_signature_confidence"] = 4, rng.random()
        ana[i]["track_id"] = row.track_id
        mb[i] = (0, row.year)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=False) as h5:
            for group, table in tables.items():
                h5.create_group(group, track_order=False).create_dataset("songs", data=table, track_times=False)


def _write_tags_db(path: Path, rows: Sequence[_Row], rng: np.random.Generator) -> None:
    tagged = [rows[int(i)] for i in rng.permutation(len(rows)) if rows[int(i)].tagged and rows[int(i)].in_summary]
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        try:
            con.executescript("CREATE TABLE tids (tid TEXT); CREATE TABLE tags (tag TEXT);"
                              "CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT);")
            tag_ids: dict[str, int] = {}
            pairs = []
            for tid_rowid, row in enumerate(tagged, start=1):
                for tag, val in _raw_tags(rng, row):
                    if tag not in tag_ids:
                        tag_ids[tag] = len(tag_ids) + 1
                    pairs.append((tid_rowid, tag_ids[tag], val))
            con.executemany("INSERT INTO tids (ROWID, tid) VALUES (?, ?)",
                            [(i, r.track_id) for i, r in enumerate(tagged, start=1)])
            con.executemany("INSERT INTO tags (ROWID, tag) VALUES (?, ?)", [(i, t) for t, i in tag_ids.items()])
            con.executemany("INSERT INTO tid_tag (tid, tag, val) VALUES (?, ?, ?)", pairs)
            con.execute("CREATE INDEX idx_tid_tag_tid ON tid_tag (tid)")
            con.execute("CREATE INDEX idx_tid_tag_tag ON tid_tag (tag)")
            con.commit()
        finally:
            con.close()


def _mismatch_text(mismatches: Sequence[tuple[_Row, str, str]], artists: Sequence[dict]) -> str:
    lines = [f"ERROR: <{row.song_id} {row.track_id}> {artists[row.artist]['name']}  -  {row.title}  !=  "
             f"{other_artist}  -  {other_title}" for row, other_artist, other_title in mismatches]
    return "\n".join(sorted(lines)) + "\n"


def _duplicates_text(groups: Sequence[list[_Row]], artists: Sequence[dict], seed: int) -> str:
    lines = ["# MSD duplicates: songs found several times under different track ids",
             f"# synthetic miniature MSD (msd.synthetic, seed {seed})",
             "# format: a line '%<group id> <artist> - <title>' opens each group, then one track id per line"]
    for number, group in enumerate(groups, start=1):
        first = group[0]
        lines.append(f"%{_stable_seed(seed, 'dup', number) % 100000} {artists[first.artist]['name']} - {first.title}")
        lines += sorted(r.track_id for r in group)
    return "\n".join(lines) + "\n"


def write_mp3(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, *, quality: float = 0.9) -> int:
    """Encode float32 [n_samples, n_channels] audio in [-1, 1] as a VBR mp3, atomically.

    Args:
        quality: libsndfile's compression level for VBR, 0 (best, largest) .. 1 (smallest, fastest).
    Returns:
        the file size in bytes.
    """
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format="MP3", bitrate_mode="VARIABLE", compression_level=quality)
    data = buffer.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


def write_audio_job(job: AudioJob) -> int:
    """Render, apply the fault and write one preview; returns its size in bytes (worker function)."""
    path = Path(job.path)
    if job.fault == "zero_byte":
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"")
        return 0
    if job.fault == "corrupt":
        data = np.random.default_rng(job.seed).integers(0, 256, 60_000, dtype=np.uint8).tobytes()
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return len(data)
    duration_s = SHORT_CLIP_S if job.fault == "short" else job.duration_s
    audio = music_synth.render_track(job.tags, job.seed, duration_s=duration_s, sample_rate=SAMPLE_RATE)
    if job.fault == "silence":
        start = int(min(SILENCE_START_S, duration_s / 3) * SAMPLE_RATE)
        audio[start:start + int(SILENCE_LENGTH_S * SAMPLE_RATE)] = 0.0
    return write_mp3(path, audio, SAMPLE_RATE, quality=mp3_quality(duration_s))


def mp3_quality(duration_s: float) -> float:
    """VBR compression level that keeps a preview of `duration_s` above 100,000 bytes.

    0.9 (the fastest to encode) gives about 70 kbit/s of this music: enough from 20 s on. Shorter
    previews, and the 8 s short-clip fault (which only its length may give away), get more bits.
    """
    return 0.9 if duration_s >= 20 else 0.5 if duration_s >= 10 else 0.0


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------

def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir}: exists and is not a folder; choose another OUT_DIR")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out_dir}: folder is not empty; pass --overwrite to replace the miniature MSD")
        shutil.rmtree(out_dir / "audio", ignore_errors=True)  # stale previews would join the new world
        for name in ("msd_summary_file.h5", "lastfm_tags.db", "sid_mismatches.txt", "msd_duplicates.txt",
                     "truth.csv"):
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


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
    rows, artists, groups, mismatches = _build_world(n_tracks, seed)
    rng = np.random.default_rng([seed, 0x746167])
    summary_rows = [rows[int(i)] for i in rng.permutation(len(rows)) if rows[int(i)].in_summary]
    msd = SyntheticMSD(root=out_dir, summary_h5=out_dir / "msd_summary_file.h5", tags_db=out_dir / "lastfm_tags.db",
                       mismatches_txt=out_dir / "sid_mismatches.txt", duplicates_txt=out_dir / "msd_duplicates.txt",
                       audio_dir=out_dir / "audio", truth_csv=out_dir / "truth.csv", n_tracks=n_tracks)
    _write_summary(msd.summary_h5, summary_rows, artists, rng)
    _write_tags_db(msd.tags_db, rows, rng)
    write_text_atomic(msd.mismatches_txt, _mismatch_text(mismatches, artists))
    write_text_atomic(msd.duplicates_txt, _duplicates_text(groups, artists, seed))

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
        "msd.synthetic", "Generate a miniature Million Song Dataset in the real file formats, with synthesised "
        "music whose content matches its tags and the faults the cleaning stage must catch.",
        "examples:\n"
        "  python -m msd.synthetic demo_msd --tracks 300 --seed 0\n"
        "  python msd/synthetic.py /tmp/tiny --tracks 40 --seed 1 --duration-s 20 --jobs 2 --overwrite")
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


if __name__ == "__main__":
    # Run the package's copy of this module, so that worker processes unpickle `msd.synthetic`
    # functions rather than this `__main__` script's.
    from msd.miniature.synthetic_msd import main as package_main

    sys.exit(package_main())
