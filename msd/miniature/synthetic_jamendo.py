"""A miniature MTG-Jamendo in the real file formats, with audio whose content matches its tags.

Writes OUT_DIR/
    data/autotagging.tsv                  every track with all its tags: tab-separated, header
                                          TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS, then one field per
                                          tag (`genre---rock`, `instrument---piano`, `mood/theme---happy`), sorted
    data/autotagging_<subset>.tsv         top50tags (the 50 most frequent tags), genre, instrument, moodtheme:
                                          the tracks with a tag of the subset, and only those tags
    data/splits/split-<N>/autotagging[_<subset>]-{train,validation,test}.tsv   five artist-disjoint splits
                                          (about 60/20/20 of each style's artists); as in the real ones, a subset's tags
                                          missing from one of the three parts are dropped from all three, and
                                          tracks left without a tag are not listed
    audio/<NN>/<id>.mp3                   44.1 kHz stereo mp3s (30 s by default), NN = the id's last two digits
    synthetic_manifest.json               track id -> tags, recipes and the fault planted in it

The tag names are real MTG-Jamendo tags. Each artist has a style (rock, jazz, ...) whose tags it draws; the
audio is rendered by `msd.miniature.music_synth` from the tags' recipes, so a model can learn them. Planted
faults: one track with no mp3, one 0-byte mp3, one corrupt mp3 (all still listed in the metadata).

The metadata is written last, data/autotagging.tsv the very last: a finished run is refused without
--overwrite, an interrupted one is resumed, keeping the mp3s already written.
"""

from __future__ import annotations


import argparse
import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from msd.converters.jamendo import HEADER, N_SPLITS, OFFICIAL_SPLITS, audio_path, split_file, subset_stem
from msd.miniature.synthetic_mtt import clip_seed, recipes_for, render_to_mp3, write_fault
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import ConfigError
from msd.miniature import start_corpus
from orpheus.files import atomic_path, write_json_atomic
from orpheus.parallel import parallel_map

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100
CLIP_S = 30.0
MANIFEST = "synthetic_manifest.json"
DATA_DIR = "data"
AUDIO_DIR = "audio"
SUBSET_CATEGORIES = {"genre": "genre", "instrument": "instrument", "moodtheme": "mood/theme"}
TOP_TAGS = 50
SPLIT_SHARES = (0.6, 0.2, 0.2)

G, I, M = "genre---", "instrument---", "mood/theme---"
# Each style: (tags always present, tags drawn with the given probability), real MTG-Jamendo names.
STYLES: dict[str, tuple[tuple[str, ...], dict[str, float]]] = {
    "rock": ((G + "rock",), {G + "poprock": .3, G + "alternative": .3, I + "guitar": .6, I + "electricguitar": .4,
                             I + "drums": .5, I + "bass": .3, I + "voice": .3, M + "energetic": .3}),
    "metal": ((G + "metal",), {G + "rock": .3, G + "hardrock": .3, I + "electricguitar": .5, I + "drums": .5,
                               M + "dark": .4, M + "energetic": .4}),
    "electronic": ((G + "electronic",), {G + "techno": .4, G + "experimental": .2, I + "synthesizer": .6,
                                         I + "drummachine": .4, I + "computer": .2, M + "dark": .2}),
    "dance": ((G + "dance",), {G + "house": .4, G + "electronic": .5, I + "drummachine": .4, I + "synthesizer": .4,
                               M + "energetic": .4, M + "party": .3}),
    "jazz": ((G + "jazz",), {G + "lounge": .3, G + "easylistening": .3, I + "piano": .5, I + "bass": .4,
                             I + "saxophone": .4, M + "relaxing": .3}),
    "classical": ((G + "classical",), {G + "soundtrack": .3, G + "orchestral": .3, I + "piano": .4,
                                       I + "strings": .5, I + "violin": .4, M + "emotional": .3, M + "film": .3}),
    "ambient": ((G + "ambient",), {G + "chillout": .4, G + "newage": .3, I + "synthesizer": .4, I + "pad": .3,
                                   M + "relaxing": .5, M + "calm": .4, M + "meditative": .3}),
    "hiphop": ((G + "hiphop",), {G + "rap": .5, I + "drummachine": .4, I + "beat": .4, I + "voice": .6,
                                 M + "dark": .2}),
    "folk": ((G + "folk",), {G + "popfolk": .3, G + "singersongwriter": .2, I + "acousticguitar": .6,
                             I + "guitar": .4, I + "voice": .4, M + "sad": .2, M + "melancholic": .2}),
    "pop": ((G + "pop",), {G + "poprock": .3, G + "easylistening": .3, I + "voice": .6, I + "keyboard": .3,
                           I + "synthesizer": .3, M + "happy": .5, M + "love": .3}),
}

# Raw tag -> the music_synth recipe whose sound carries it; tags with no recipe of their own (piano,
# bass, film, ...) come with their style's genre recipe, which leads.
JAMENDO_RECIPES: dict[str, str] = {
    **{G + t: "rock" for t in ("rock", "poprock", "alternative")}, I + "electricguitar": "rock",
    **{G + t: "metal" for t in ("metal", "hardrock")}, M + "dark": "metal",
    **{G + t: "electronic" for t in ("electronic", "techno", "experimental")}, I + "synthesizer": "electronic",
    **{G + t: "dance" for t in ("dance", "house")}, I + "drummachine": "dance", M + "party": "dance",
    **{G + t: "jazz" for t in ("jazz", "lounge")}, I + "saxophone": "jazz",
    **{G + t: "classical" for t in ("classical", "orchestral")}, I + "strings": "classical", I + "violin": "classical",
    **{G + t: "ambient" for t in ("ambient", "chillout", "newage")}, M + "relaxing": "ambient",
    M + "calm": "ambient", M + "meditative": "ambient",
    G + "hiphop": "hip hop", G + "rap": "rap",
    **{G + t: "folk" for t in ("folk", "popfolk", "singersongwriter")}, I + "acousticguitar": "folk",
    G + "pop": "pop", M + "happy": "pop",
}


@dataclass(frozen=True)
class Track:
    number: int                 # the Jamendo track number: track_0000214 -> 214
    artist: int
    album: int
    style: str
    tags: tuple[str, ...]       # sorted raw tags
    fault: str = ""             # "" | "empty" | "corrupt" | "missing"

    @property
    def track_id(self) -> str:
        return f"track_{self.number:07d}"

    @property
    def path(self) -> str:
        return audio_path(self.number)


def plan_tracks(n_tracks: int, seed: int) -> list[Track]:
    """Choose ids, artists, albums, styles, tags and faults for `n_tracks` tracks, deterministically.

    About three tracks per artist, at least three artists per style (so that every style can be in the
    train, validation and test parts of each split): small datasets use fewer styles. Each artist's first
    track carries its style's first instrument and mood/theme tags, so no subset's split is empty.
    """
    if n_tracks < 12:
        raise ConfigError(f"--tracks must be at least 12 (three artists per style, two styles), got {n_tracks}")
    rng = np.random.default_rng(seed)
    numbers = sorted(rng.choice(np.arange(200, 1_400_000), size=n_tracks, replace=False).tolist())
    n_artists = max(6, n_tracks // 3)
    artists = sorted(rng.choice(np.arange(1, 500_000), size=n_artists, replace=False).tolist())
    styles = sorted(rng.permutation(sorted(STYLES))[:min(len(STYLES), n_artists // 3)].tolist())
    style_of = {artist: styles[i % len(styles)] for i, artist in enumerate(artists)}
    owner = [artists[i % n_artists] for i in rng.permutation(n_tracks)]
    album_of = {artist: int(a) for artist, a in zip(artists, rng.choice(np.arange(1, 200_000), size=n_artists,
                                                                         replace=False))}
    tracks, seen = [], set()
    for number, artist in zip(numbers, owner):
        always, optional = STYLES[style_of[artist]]
        if artist not in seen:  # its first track carries the style's first instrument and mood tags
            seen.add(artist)
            always = (*always, *(next(t for t in optional if t.startswith(c)) for c in (I, M)))
        tags = sorted({*always, *(t for t, p in optional.items() if rng.random() < p)})
        tracks.append(Track(int(number), artist, album_of[artist], style_of[artist], tuple(tags)))
    for index, fault in zip(rng.choice(n_tracks, size=3, replace=False), ("empty", "corrupt", "missing")):
        tracks[index] = replace(tracks[index], fault=fault)
    return tracks


def subset_tags(tracks: Sequence[Track], subset: str) -> set[str]:
    """The raw tags a subset keeps: one category, the 50 most frequent (ties by name), or all."""
    counts = Counter(tag for track in tracks for tag in track.tags)
    if subset == "all":
        return set(counts)
    if subset == "top50tags":
        return set(sorted(counts, key=lambda t: (-counts[t], t))[:TOP_TAGS])
    return {tag for tag in counts if tag.startswith(SUBSET_CATEGORIES[subset] + "---")}


def artist_splits(tracks: Sequence[Track], seed: int, split_index: int) -> dict[int, str]:
    """Artist -> train / validation / test for split N: within each style a seeded shuffle of its artists,
    cut about 60/20/20 with at least one artist in each part (so each style's genre is in all three)."""
    by_style: dict[str, list[int]] = {}
    for track in tracks:
        if track.artist not in by_style.setdefault(track.style, []):
            by_style[track.style].append(track.artist)
    rng = np.random.default_rng([seed, 7, split_index])
    split_of = {}
    for style in sorted(by_style):
        artists = sorted(by_style[style])
        order = rng.permutation(len(artists))
        n_valid = n_test = max(1, round(SPLIT_SHARES[1] * len(artists)))
        names = ["validation"] * n_valid + ["test"] * n_test + ["train"] * (len(artists) - n_valid - n_test)
        split_of.update({artists[i]: names[k] for k, i in enumerate(order)})
    return split_of


def tsv_row(track: Track, tags: Sequence[str], duration_s: float) -> list[str]:
    return [track.track_id, f"artist_{track.artist:06d}", f"album_{track.album:06d}", track.path,
            f"{duration_s:.1f}", *tags]


def write_tsv(path: Path, rows: Sequence[Sequence[str]]) -> None:
    """A tab-separated file with the real header, unquoted (as the real ones are), atomically."""
    lines = ["\t".join(HEADER), *("\t".join(row) for row in rows)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def generate(out_dir: str | Path, *, n_tracks: int = 64, seed: int = 0, duration_s: float = CLIP_S, jobs: int = 1,
             quiet: bool = False, overwrite: bool = False) -> dict[str, dict]:
    """Write a miniature MTG-Jamendo into `out_dir` (see the module docstring).

    Returns:
        The manifest: track_id -> {"mp3_path", "tags", "artist_id", "style", "recipes", "fault",
        "splits": [split of split-0, ..., split-4]}.
    """
    from msd.miniature.music_synth import TAG_RECIPES

    out_dir = Path(out_dir)
    data_dir, audio_dir = out_dir / DATA_DIR, out_dir / AUDIO_DIR
    start_corpus(out_dir, data_dir / f"{subset_stem('all')}.tsv", overwrite)  # written last: a finished run
    if duration_s <= 0:
        raise ConfigError(f"--duration-s must be positive, got {duration_s}")
    tracks = plan_tracks(n_tracks, seed)
    fault_rng = np.random.default_rng([seed, 1])
    jobs_to_render, manifest = [], {}
    splits_of_artist = [artist_splits(tracks, seed, n) for n in range(N_SPLITS)]
    for track in tracks:
        path = audio_dir / track.path
        # the style's genre leads: music_synth takes the tempo from the first genre recipe
        ordered = [*STYLES[track.style][0], *track.tags]
        recipes = recipes_for(ordered, JAMENDO_RECIPES, list(TAG_RECIPES))
        if track.fault:
            write_fault(path, track.fault, fault_rng)
        elif overwrite or not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            if overwrite and path.exists():
                path.unlink()
            jobs_to_render.append((str(path), recipes, clip_seed(seed, track.number), duration_s, SAMPLE_RATE, 2))
        manifest[track.track_id] = {"mp3_path": track.path, "tags": list(track.tags),
                                    "artist_id": f"artist_{track.artist:06d}", "style": track.style,
                                    "recipes": recipes, "fault": track.fault,
                                    "splits": [OFFICIAL_SPLITS[s[track.artist]] for s in splits_of_artist]}
    list(parallel_map(render_to_mp3, jobs_to_render, jobs=jobs, desc="rendering Jamendo tracks", quiet=quiet))

    write_json_atomic(out_dir / MANIFEST, manifest)
    for subset in ("top50tags", *SUBSET_CATEGORIES, "all"):
        kept = subset_tags(tracks, subset)
        members = [(t, [tag for tag in t.tags if tag in kept]) for t in tracks]
        members = [(t, tags) for t, tags in members if tags]
        for n, split_of in enumerate(splits_of_artist):
            parts = {name: [(t, tags) for t, tags in members if split_of[t.artist] == name] for name in OFFICIAL_SPLITS}
            in_all = set.intersection(*({tag for _, tags in part for tag in tags} for part in parts.values()))
            for name, part in parts.items():
                rows = [tsv_row(t, [tag for tag in tags if tag in in_all], duration_s) for t, tags in part]
                write_tsv(split_file(data_dir, subset, n, name), [row for row in rows if len(row) > 5])
        if subset != "all":
            write_tsv(data_dir / f"{subset_stem(subset)}.tsv", [tsv_row(t, tags, duration_s) for t, tags in members])
    write_tsv(data_dir / f"{subset_stem('all')}.tsv", [tsv_row(t, t.tags, duration_s) for t in tracks])
    log.info("wrote %d tracks (%d faults) to %s", len(tracks), sum(bool(t.fault) for t in tracks), out_dir)
    return manifest


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus synthetic-jamendo",
        "Write a miniature MTG-Jamendo (data/autotagging*.tsv, data/splits/split-0..4/, audio NN/ID.mp3 of 44.1 "
        "kHz stereo mp3s rendered from the tags) with planted faults (missing, empty and corrupt mp3s).",
        "examples:\n"
        "  orpheus synthetic-jamendo mini_jamendo --tracks 64 --seed 0\n"
        "  orpheus synthetic-jamendo mini_jamendo_short --tracks 32 --duration-s 5 --jobs 2\n"
        "  orpheus jamendo mini_clean --metadata-dir mini_jamendo/data --root-dir mini_jamendo/audio")
    parser.add_argument("out_dir", help="output folder (holding data/ and audio/)")
    parser.add_argument("--tracks", type=int, default=64, help="number of tracks (at least 12)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    parser.add_argument("--duration-s", type=float, default=CLIP_S, help="track length in seconds")
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        manifest = generate(args.out_dir, n_tracks=args.tracks, seed=args.seed, duration_s=args.duration_s,
                            jobs=args.jobs, quiet=args.quiet, overwrite=args.overwrite)
        faults = sum(bool(entry["fault"]) for entry in manifest.values())
        print(f"wrote {len(manifest)} MTG-Jamendo tracks ({faults} planted faults) to {args.out_dir}")
        return 0

    return run_main(parser, argv, command)
