"""The world of the miniature MSD (`msd.miniature.synthetic_msd`): artists, summary rows, audio tracks with
their clean tags and raw Last.fm spellings (`RAW_TAG_VARIANTS`, `JUNK_TAGS`), the planted faults
(`FAULT_KINDS`, `fault_plan`), names and ids. Pure: a seed in, rows out; nothing is written here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msd.miniature import music_synth
from orpheus.errors import ConfigError

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
class Row:
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


def stable_seed(*parts: object) -> int:
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


def build_world(n_tracks: int, seed: int) -> tuple[list[Row], list[dict], list[list[Row]],
                                                   list[tuple[Row, str, str]]]:
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

    def new_row(artist: int, tags: tuple[str, ...]) -> Row:
        if "80s" in tags:
            year = int(rng.integers(1980, 1990))
        elif "90s" in tags:
            year = int(rng.integers(1990, 2000))
        else:
            year = 0 if rng.random() < 0.4 else int(rng.integers(1960, 2011))
        return Row(track_id=_msd_id(rng, "TR", taken), song_id=_msd_id(rng, "SO", taken), artist=artist,
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
        row.audio_seed = stable_seed(seed, "audio", i)
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
    groups: list[list[Row]] = []
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


def raw_tags(rng: np.random.Generator, row: Row) -> list[tuple[str, float]]:
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
