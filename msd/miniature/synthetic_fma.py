"""A miniature FMA (Free Music Archive) in the real file formats, with audio whose content matches its genres.

Writes OUT_DIR/
    fma_metadata/tracks.csv   the real two-level header (written by pandas from MultiIndex columns, read back
                              with `pd.read_csv(..., index_col=0, header=[0, 1])`): album/id, album/title,
                              artist/id, artist/name, set/split, set/subset, track/bit_rate, track/date_created,
                              track/duration, track/genre_top, track/genres, track/genres_all, track/interest,
                              track/license, track/listens, track/number, track/title; list columns hold
                              Python literals such as `[21, 811]`
    fma_metadata/genres.csv   genre_id, #tracks, parent, title, top_level: a genre tree modelled on FMA's
                              (16 top-level genres and common sub-genres, with FMA's ids)
    fma_large/<000>/<000002>.mp3   44.1 kHz stereo mp3 previews (30 s by default) of every track
    synthetic_manifest.json   track id -> genres, recipes and the fault planted in it

Subsets nest as in FMA (small in medium in large); "small" holds only the 8 balanced genres of
fma_small. Each artist has one main genre and all its tracks share a split (training 80%,
validation 10%, test 10%), as FMA's official split keeps artists apart. A few large-only tracks mix
two top-level genres and have no genre_top, as in FMA. Planted faults: one track with no mp3, one
0-byte mp3, one corrupt mp3. The audio is rendered by `msd.miniature.music_synth` from the genres' recipes.

The metadata files are written last, tracks.csv the very last: a finished run is refused without
--overwrite, an interrupted one (no tracks.csv) is resumed, keeping the mp3s already written.
"""

from __future__ import annotations


import argparse
import hashlib
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from msd.converters.fma import GENRES_CSV, TRACKS_CSV, audio_path
from msd.miniature.synthetic_mtt import clip_seed, render_to_mp3, write_fault
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import ConfigError
from msd.miniature import start_corpus
from orpheus.files import atomic_path, write_json_atomic
from orpheus.parallel import parallel_map

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100
CLIP_S = 30.0
MANIFEST = "synthetic_manifest.json"
METADATA_DIR = "fma_metadata"
AUDIO_DIR = "fma_large"

# (genre_id, parent (0 = top level), title), modelled on FMA's genres.csv.
GENRE_TREE: tuple[tuple[int, int, str], ...] = (
    (2, 0, "International"), (3, 0, "Blues"), (4, 0, "Jazz"), (5, 0, "Classical"), (8, 0, "Old-Time / Historic"),
    (9, 0, "Country"), (10, 0, "Pop"), (12, 0, "Rock"), (13, 0, "Easy Listening"), (14, 0, "Soul-RnB"),
    (15, 0, "Electronic"), (17, 0, "Folk"), (20, 0, "Spoken"), (21, 0, "Hip-Hop"), (38, 0, "Experimental"),
    (1235, 0, "Instrumental"),
    (25, 12, "Punk"), (26, 12, "Post-Rock"), (31, 12, "Metal"), (45, 12, "Loud-Rock"), (66, 12, "Indie-Rock"),
    (53, 45, "Noise-Rock"), (181, 15, "Techno"), (182, 15, "House"), (236, 15, "IDM"), (42, 15, "Ambient Electronic"),
    (286, 15, "Trip-Hop"), (468, 15, "Dubstep"), (539, 21, "Rap"), (542, 21, "Alternative Hip-Hop"),
    (33, 17, "Psych-Folk"), (49, 17, "Free-Folk"), (37, 4, "Jazz: Vocal"), (74, 4, "Free-Jazz"),
    (187, 5, "20th Century Classical"), (322, 5, "Chamber Music"), (76, 10, "Experimental Pop"),
    (362, 10, "Synth Pop"), (1, 38, "Avant-Garde"), (32, 38, "Noise"), (47, 38, "Drone"),
    (107, 1235, "Ambient"), (18, 1235, "Soundtrack"), (46, 2, "Latin America"), (117, 2, "Asia-Far East"),
    (64, 9, "Bluegrass"), (11, 14, "Disco"), (19, 14, "Funk"), (138, 20, "Poetry"),
)
SMALL_GENRES = ("Electronic", "Experimental", "Folk", "Hip-Hop", "Instrumental", "International", "Pop", "Rock")

# FMA genre title -> the music_synth recipes that render it (checked against music_synth.TAG_RECIPES in tests).
FMA_RECIPES: dict[str, tuple[str, ...]] = {
    "Rock": ("rock",), "Punk": ("rock",), "Post-Rock": ("rock", "instrumental"), "Metal": ("metal",),
    "Loud-Rock": ("metal",), "Noise-Rock": ("metal",), "Indie-Rock": ("rock",),
    "Electronic": ("electronic",), "Techno": ("electronic", "dance"), "House": ("dance",), "IDM": ("electronic",),
    "Ambient Electronic": ("ambient", "electronic"), "Trip-Hop": ("electronic", "hip hop"), "Dubstep": ("electronic",),
    "Hip-Hop": ("hip hop",), "Rap": ("rap", "hip hop"), "Alternative Hip-Hop": ("hip hop",),
    "Folk": ("folk",), "Psych-Folk": ("folk",), "Free-Folk": ("folk",), "Country": ("folk",), "Bluegrass": ("folk",),
    "Old-Time / Historic": ("folk",), "International": ("folk",), "Latin America": ("folk",),
    "Asia-Far East": ("folk",), "Jazz": ("jazz",), "Jazz: Vocal": ("jazz", "female"), "Free-Jazz": ("jazz",),
    "Blues": ("jazz",), "Easy Listening": ("jazz",), "Classical": ("classical",),
    "20th Century Classical": ("classical",), "Chamber Music": ("classical",), "Pop": ("pop",),
    "Experimental Pop": ("pop", "electronic"), "Synth Pop": ("pop", "electronic"), "Soul-RnB": ("pop",),
    "Disco": ("dance",), "Funk": ("dance",), "Experimental": ("ambient",), "Avant-Garde": ("ambient",),
    "Noise": ("ambient",), "Drone": ("ambient",), "Instrumental": ("instrumental",), "Ambient": ("ambient",),
    "Soundtrack": ("classical", "instrumental"), "Spoken": ("male",), "Poetry": ("male",),
}
LICENSES = ("Attribution-NonCommercial-ShareAlike 3.0 International", "Attribution 4.0 International",
            "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0")
WORDS = ("Static", "Harbor", "Lantern", "Echo", "Meadow", "Circuit", "Velvet", "Granite", "Orbit", "Willow",
         "Ember", "Tide", "Prism", "Hollow", "Comet", "Juniper")


def genre_table() -> pd.DataFrame:
    """GENRE_TREE as FMA's genres.csv columns (without #tracks): genre_id, parent, title, top_level."""
    parents = {gid: parent for gid, parent, _ in GENRE_TREE}

    def top_of(gid: int) -> int:
        while parents[gid]:
            gid = parents[gid]
        return gid

    return pd.DataFrame([(gid, parent, title, top_of(gid)) for gid, parent, title in sorted(GENRE_TREE)],
                        columns=["genre_id", "parent", "title", "top_level"])


def ancestors(gid: int, parents: dict[int, int]) -> list[int]:
    """`gid` and every genre above it."""
    chain = [gid]
    while parents[chain[-1]]:
        chain.append(parents[chain[-1]])
    return chain


def plan_tracks(n_tracks: int, seed: int) -> pd.DataFrame:
    """The tracks table with FMA's two-level columns, index `track_id`, deterministic for `seed`.

    Besides FMA's columns it carries ('synthetic', 'fault'): "" | "missing" | "empty" | "corrupt".
    """
    if n_tracks < 12:
        raise ConfigError(f"--tracks must be at least 12, got {n_tracks}")
    rng = np.random.default_rng(seed)
    genres = genre_table()
    parents = dict(zip(genres["genre_id"], genres["parent"]))
    title_of = dict(zip(genres["genre_id"], genres["title"]))
    id_of = {title: gid for gid, title in title_of.items()}
    tops = sorted(genres.loc[genres["parent"] == 0, "title"])
    children = {top: sorted(genres.loc[genres["top_level"] == id_of[top], "genre_id"]) for top in tops}
    n_artists = max(6, n_tracks // 4)
    artist_ids = np.sort(rng.choice(np.arange(1, 25000), size=n_artists, replace=False))
    artist_genre = {int(a): (SMALL_GENRES[i % len(SMALL_GENRES)] if i % 3 else tops[rng.integers(len(tops))])
                    for i, a in enumerate(artist_ids)}
    # Artist-level official split, 80/10/10 (at least one artist each) in the order of a stable hash.
    by_hash = sorted(artist_genre, key=lambda a: hashlib.sha1(f"{seed}:{a}".encode()).hexdigest())
    n_held_out = max(1, n_artists // 10)
    artist_split = {a: "test" if i < n_held_out else "validation" if i < 2 * n_held_out else "training"
                    for i, a in enumerate(by_hash)}
    track_ids = np.sort(rng.choice(np.arange(2, 155321), size=n_tracks, replace=False))
    # Every artist gets at least one track, so every split has tracks.
    track_artists = rng.permutation(np.concatenate([artist_ids, rng.choice(artist_ids, n_tracks - n_artists)]))
    rows = []
    for track_id, artist in zip(track_ids, track_artists.tolist()):
        top = artist_genre[artist]
        candidates = children[top]
        gid = int(candidates[rng.integers(len(candidates))])
        genre_list = [gid]
        if rng.random() < .3:  # a second genre, mostly of the same family, sometimes of another
            pool = candidates if rng.random() < .7 else genres["genre_id"].to_list()
            other = int(pool[rng.integers(len(pool))])
            if other not in genre_list:
                genre_list.append(other)
        genres_all = sorted({g for genre in genre_list for g in ancestors(genre, parents)})
        top_levels = {g for g in genres_all if parents[g] == 0}
        genre_top = title_of[top_levels.pop()] if len(top_levels) == 1 else np.nan
        draw = rng.random()
        subset = ("small" if draw < .4 else "medium" if draw < .7 else "large") if genre_top in SMALL_GENRES \
            else ("medium" if draw < .5 and isinstance(genre_top, str) else "large")
        rows.append({
            ("album", "id"): int(rng.integers(1, 20000)),
            ("album", "title"): f"{WORDS[rng.integers(len(WORDS))]} {WORDS[rng.integers(len(WORDS))]}",
            ("artist", "id"): artist,
            ("artist", "name"): f"{WORDS[artist % len(WORDS)]} {WORDS[(artist // 16) % len(WORDS)]} {artist % 97}",
            ("set", "split"): artist_split[artist],
            ("set", "subset"): subset,
            ("track", "bit_rate"): int(rng.choice([128000, 192000, 256000, 320000])),
            ("track", "date_created"): f"20{rng.integers(8, 17):02d}-{rng.integers(1, 13):02d}-"
                                       f"{rng.integers(1, 29):02d} {rng.integers(0, 24):02d}:"
                                       f"{rng.integers(0, 60):02d}:00",
            ("track", "duration"): int(rng.integers(60, 600)),
            ("track", "genre_top"): genre_top,
            ("track", "genres"): str(sorted(genre_list)),
            ("track", "genres_all"): str(genres_all),
            ("track", "interest"): int(rng.integers(10, 50000)),
            ("track", "license"): LICENSES[rng.integers(len(LICENSES))],
            ("track", "listens"): int(rng.integers(1, 20000)),
            ("track", "number"): int(rng.integers(1, 15)),
            ("track", "title"): f"{WORDS[rng.integers(len(WORDS))]} {rng.integers(1, 100)}",
            ("synthetic", "fault"): "",
        })
    frame = pd.DataFrame(rows, index=pd.Index(track_ids, name="track_id"))
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    picks = rng.choice(n_tracks, size=3, replace=False)
    for pick, fault in zip(picks, ("missing", "empty", "corrupt")):
        frame.iloc[pick, frame.columns.get_loc(("synthetic", "fault"))] = fault
    return frame


def generate(out_dir: str | Path, *, n_tracks: int = 64, seed: int = 0, duration_s: float = CLIP_S, jobs: int = 1,
             quiet: bool = False, overwrite: bool = False) -> dict[str, dict]:
    """Write a miniature FMA into `out_dir` (see the module docstring).

    Returns:
        The manifest: str(track_id) -> {"mp3_path", "genres", "genre_top", "subset", "split", "recipes", "fault"}.
    """
    from msd.miniature.music_synth import TAG_RECIPES

    out_dir = Path(out_dir)
    metadata_dir, audio_dir = out_dir / METADATA_DIR, out_dir / AUDIO_DIR
    start_corpus(out_dir, metadata_dir / TRACKS_CSV, overwrite)  # written last: present only when a run finished
    if duration_s <= 0:
        raise ConfigError(f"--duration-s must be positive, got {duration_s}")
    tracks = plan_tracks(n_tracks, seed)
    genres = genre_table()
    title_of = dict(zip(genres["genre_id"], genres["title"]))
    fault_rng = np.random.default_rng([seed, 1])
    manifest, jobs_to_render = {}, []
    for track_id, row in tracks.iterrows():
        genre_titles = [title_of[g] for g in eval_id_list(row[("track", "genres_all")])]
        # music_synth takes the tempo from the first genre: the top genre leads, then the track's own genres.
        leads = [row[("track", "genre_top")]] if isinstance(row[("track", "genre_top")], str) else []
        ordered = [*leads, *(title_of[g] for g in eval_id_list(row[("track", "genres")])), *genre_titles]
        recipes = [r for r in dict.fromkeys(r for title in ordered for r in FMA_RECIPES.get(title, ()))
                   if r in TAG_RECIPES]
        fault = row[("synthetic", "fault")]
        path = audio_dir / audio_path(track_id)
        if fault:
            write_fault(path, fault, fault_rng)
        elif overwrite or not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            if overwrite and path.exists():
                path.unlink()
            jobs_to_render.append((str(path), recipes, clip_seed(seed, int(track_id)), duration_s, SAMPLE_RATE, 2))
        manifest[str(track_id)] = {"mp3_path": audio_path(track_id), "genres": genre_titles,
                                   "genre_top": row[("track", "genre_top")] if isinstance(
                                       row[("track", "genre_top")], str) else None,
                                   "subset": row[("set", "subset")], "split": row[("set", "split")],
                                   "artist_id": str(row[("artist", "id")]), "recipes": recipes, "fault": fault}
    list(parallel_map(render_to_mp3, jobs_to_render, jobs=jobs, desc="rendering FMA tracks", quiet=quiet))

    counts = pd.Series([g for text in tracks[("track", "genres_all")] for g in eval_id_list(text)]).value_counts()
    genres.insert(1, "#tracks", genres["genre_id"].map(counts).fillna(0).astype(int))
    write_json_atomic(out_dir / MANIFEST, manifest)
    with atomic_path(metadata_dir / GENRES_CSV) as tmp:
        genres.to_csv(tmp, index=False)
    with atomic_path(metadata_dir / TRACKS_CSV) as tmp:
        tracks.drop(columns=[("synthetic", "fault")]).to_csv(tmp)
    log.info("wrote %d tracks to %s", len(tracks), out_dir)
    return manifest


def eval_id_list(text: str) -> list[int]:
    """Parse the `[21, 811]` lists this module writes (no eval: ints separated by commas)."""
    inner = text.strip()[1:-1].strip()
    return [int(part) for part in inner.split(",")] if inner else []


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus synthetic-fma",
        "Write a miniature FMA (fma_metadata/tracks.csv with the real two-level header, genres.csv, and "
        "fma_large/<000>/<000002>.mp3 44.1 kHz stereo previews rendered from the genres) with faults.",
        "examples:\n"
        "  orpheus synthetic-fma mini_fma --tracks 64 --seed 0\n"
        "  orpheus synthetic-fma mini_fma_short --tracks 32 --duration-s 5 --jobs 2\n"
        "  orpheus fma mini_clean --metadata-dir mini_fma/fma_metadata --root-dir mini_fma/fma_large "
        "--subset medium --tags all")
    parser.add_argument("out_dir", help="output folder (holds fma_metadata/ and fma_large/)")
    parser.add_argument("--tracks", type=int, default=64, help="number of tracks (at least 12)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    parser.add_argument("--duration-s", type=float, default=CLIP_S, help="preview length in seconds")
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        manifest = generate(args.out_dir, n_tracks=args.tracks, seed=args.seed, duration_s=args.duration_s,
                            jobs=args.jobs, quiet=args.quiet, overwrite=args.overwrite)
        faults = sum(bool(entry["fault"]) for entry in manifest.values())
        print(f"wrote {len(manifest)} FMA tracks ({faults} planted faults) to {args.out_dir}")
        return 0

    return run_main(parser, argv, command)
