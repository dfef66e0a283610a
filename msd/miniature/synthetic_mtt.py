"""A miniature MagnaTagATune in the real file formats, with audio whose content matches its tags.

Writes OUT_DIR/
    annotations_final.csv   tab-separated, every field quoted (as the real file): clip_id, the 188 real tag
                            columns (msd/txt/mtt_tags.txt), mp3_path
    clip_info_final.csv     tab-separated, quoted: clip_id, track_number, title, artist, album, url,
                            segmentStart, segmentEnd, original_url, mp3_path
    0/ .. f/                mono 16 kHz mp3 clips (29.1 s by default) named like the real ones,
                            `<folder>/<artist>-<album>-<nn>-<title>-<start>-<end>.mp3`
    synthetic_manifest.json clip id -> tags, recipes and the fault planted in it (for tests and demos)

Clips come from albums of one style each (classical, rock, techno, ...), tagged with the realistic
MTT vocabulary including its synonym variants (`clasical`, `female vocal`, `no voice`, ...); each
album sits in one folder, as in the real release; every 16 albums use each folder once, in a random
order (the first block starts 0, c, d), so every split of the standard folder split is populated. The audio is rendered by `msd.miniature.music_synth` from
the tags' recipes, so a model can learn the tags. Planted faults: the known-bad clip ids of the real
release as 0-byte files (35644, 55753, 57881), one more 0-byte clip, one corrupt clip (random bytes),
one clip whose mp3 is missing, and a few clips with no tag at all.

The metadata files are written last, annotations_final.csv the very last: a finished run is refused
without --overwrite, an interrupted one (no annotations_final.csv) is resumed, keeping the mp3s
already written.
"""

from __future__ import annotations


import argparse
import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import soundfile as sf

from msd.converters.mtt import (ANNOTATIONS, CLIP_INFO, CLIP_INFO_COLUMNS, FOLDERS, MTT_KNOWN_BAD_TXT,
                     MTT_TAGS_TXT, read_list_txt)
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import ConfigError
from msd.miniature import start_corpus
from orpheus.files import atomic_path, write_json_atomic
from orpheus.parallel import parallel_map

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CLIP_S = 29.1
MANIFEST = "synthetic_manifest.json"

# Each style: (tags always present, tags drawn with the given probability). Raw MTT names, variants included.
STYLES: dict[str, tuple[tuple[str, ...], dict[str, float]]] = {
    "classical": (("classical",), {"strings": .5, "violin": .4, "cello": .3, "piano": .3, "harpsichord": .2,
                                  "slow": .4, "soft": .3, "quiet": .3, "no vocals": .3, "instrumental": .2,
                                  "clasical": .15, "classic": .2, "baroque": .2, "orchestra": .2}),
    "opera": (("opera",), {"classical": .6, "female opera": .3, "soprano": .3, "vocal": .4, "female": .3,
                           "woman singing": .2, "strings": .3, "operatic": .2}),
    "rock": (("rock",), {"guitar": .7, "drums": .6, "loud": .4, "fast": .3, "hard rock": .3, "electric guitar": .3,
                         "male vocal": .3, "male": .3, "man singing": .2, "vocals": .3, "guitars": .2}),
    "metal": (("metal",), {"heavy metal": .4, "heavy": .4, "loud": .6, "guitar": .6, "drums": .5, "fast": .4,
                           "hard": .2, "rock": .4}),
    "techno": (("techno",), {"electronic": .6, "electro": .3, "synth": .5, "beat": .5, "beats": .3, "dance": .5,
                             "fast": .4, "house": .2, "trance": .2, "no vocals": .3, "electronica": .2}),
    "ambient": (("ambient",), {"new age": .4, "slow": .5, "quiet": .4, "soft": .4, "synth": .3, "spacey": .3,
                               "calm": .3, "airy": .2, "no vocals": .3, "no voice": .2, "instrumental": .2}),
    "jazz": (("jazz",), {"jazzy": .3, "sax": .4, "piano": .4, "bass": .3, "drums": .3, "slow": .2, "trumpet": .2}),
    "folk": (("folk",), {"acoustic": .4, "acoustic guitar": .3, "guitar": .5, "banjo": .2, "country": .3,
                         "male vocal": .2, "female vocal": .2, "slow": .2}),
    "pop": (("pop",), {"female": .4, "female vocal": .3, "woman": .2, "female singer": .2, "vocal": .4,
                       "dance": .3, "upbeat": .2, "happy": .2, "singing": .2, "voice": .2}),
    "hip hop": (("hip hop",), {"rap": .6, "beat": .5, "male": .4, "male voice": .2, "drums": .3, "talking": .2}),
    "india": (("indian",), {"sitar": .6, "india": .3, "eastern": .3, "drone": .3, "percussion": .3, "no vocals": .2}),
}

# Raw MTT tag -> the music_synth recipe (a key of music_synth.TAG_RECIPES) whose sound carries it; tags
# with no recipe of their own (guitar, piano, slow, loud, ...) come with their style's genre recipe.
MTT_RECIPES: dict[str, str] = {
    **{t: "classical" for t in ("classical", "clasical", "classic", "baroque", "orchestra", "orchestral",
                                "harpsichord", "opera", "operatic", "female opera", "soprano", "strings",
                                "violin", "cello")},
    **{t: "rock" for t in ("rock", "hard rock", "electric guitar", "guitars")},
    **{t: "metal" for t in ("metal", "heavy metal", "heavy", "hard")},
    **{t: "electronic" for t in ("electronic", "electro", "electronica", "techno", "synth", "trance")},
    **{t: "dance" for t in ("dance", "house", "beat", "beats")},
    **{t: "ambient" for t in ("ambient", "new age", "spacey", "airy", "calm", "drone")},
    **{t: "jazz" for t in ("jazz", "jazzy", "sax", "trumpet")},
    **{t: "folk" for t in ("folk", "country", "banjo", "acoustic", "acoustic guitar", "sitar", "indian", "india",
                           "eastern")},
    **{t: "pop" for t in ("pop", "upbeat", "happy")},
    "hip hop": "hip hop",
    **{t: "rap" for t in ("rap", "talking")},
    **{t: "female" for t in ("female", "female vocal", "female singer", "woman", "woman singing")},
    **{t: "male" for t in ("male", "male vocal", "male voice", "man singing")},
    **{t: "instrumental" for t in ("no vocals", "no voice", "instrumental")},
}

FIRST_WORDS = ("Jade", "Amber", "Silver", "Hollow", "Crimson", "Northern", "Quiet", "Electric", "Velvet", "Iron",
               "Golden", "Lunar", "Paper", "Stone", "Wild", "Blue")
SECOND_WORDS = ("Harbor Ensemble", "Foxes", "Collective", "Quartet", "Machines", "Orchestra", "Ramblers", "Trio",
                "Satellites", "Choir", "Drifters", "Sound System", "Brothers", "Consort", "Circuit", "Lanterns")
TITLE_WORDS = ("morning", "river", "aria", "night", "drive", "echo", "fugue", "dust", "light", "station", "garden",
               "sonata", "groove", "mirror", "winter", "signal")


def slug(text: str) -> str:
    """The MTT file-name form of a name: lowercase, every non-alphanumeric character -> `_`."""
    return re.sub(r"[^0-9a-z]", "_", text.lower())


@dataclass(frozen=True)
class Clip:
    clip_id: int
    track_number: int
    title: str
    artist: str
    album: str
    style: str
    segment: int
    folder: str
    tags: tuple[str, ...]
    fault: str  # "" | "empty" | "corrupt" | "missing" | "known-bad"

    @property
    def mp3_path(self) -> str:
        start = 30 * self.segment
        return (f"{self.folder}/{slug(self.artist)}-{slug(self.album)}-{self.track_number:02d}-{slug(self.title)}"
                f"-{start}-{start + 29}.mp3")


def plan_clips(n_clips: int, seed: int) -> list[Clip]:
    """Choose clip ids, artists, albums, folders, tags and faults for `n_clips` clips, deterministically."""
    if n_clips < 16:
        raise ConfigError(f"--clips must be at least 16 (one album per audio folder), got {n_clips}")
    rng = np.random.default_rng(seed)
    known_bad = [int(i) for i in read_list_txt(MTT_KNOWN_BAD_TXT)]
    pool = np.setdiff1d(np.arange(2, 58909), known_bad)
    clip_ids = sorted([*rng.choice(pool, size=n_clips - len(known_bad), replace=False).tolist(), *known_bad])
    order = rng.permutation(n_clips)  # clips are assigned to albums in a random order of ids
    styles = sorted(STYLES)
    # Albums take the folders in blocks of 16, each a random order of all folders (so the standard split's
    # 12:1:3 proportion holds and styles do not alias with folders); the first block starts 0, c, d so
    # that even a tiny dataset has clips in train, valid and test.
    head = ["0", "c", "d"]
    folders = [*head, *rng.permutation([f for f in FOLDERS if f not in head]).tolist()]
    while len(folders) < n_clips:
        folders += rng.permutation(list(FOLDERS)).tolist()
    clips: list[Clip] = []
    position, album_index = 0, 0
    names = [f"{a} {b}" for a in FIRST_WORDS for b in SECOND_WORDS]
    artist_names = [names[i] for i in rng.choice(len(names), size=max(4, n_clips // 6), replace=False)]
    artist_styles = {artist: styles[i % len(styles)] for i, artist in enumerate(artist_names)}
    while position < n_clips:
        artist = artist_names[album_index % len(artist_names)]
        album = f"{TITLE_WORDS[album_index % len(TITLE_WORDS)].title()} Sessions {album_index + 1}"
        folder = folders[album_index]
        n_album = int(min(rng.integers(3, 7), n_clips - position))
        track_number, segment = 1, 0
        for _ in range(n_album):
            clip_id = clip_ids[order[position]]
            style = artist_styles[artist]
            always, optional = STYLES[style]
            tags = [*always, *(t for t, p in optional.items() if rng.random() < p)]
            title = f"{TITLE_WORDS[rng.integers(len(TITLE_WORDS))]} {track_number}"
            clips.append(Clip(clip_id, track_number, title.title(), artist, album, style, segment, folder,
                              tuple(tags), "known-bad" if clip_id in known_bad else ""))
            position += 1
            segment += 1
            if segment == 2 or rng.random() < .5:
                track_number, segment = track_number + 1, 0
        album_index += 1
    clips.sort(key=lambda clip: clip.clip_id)
    # Plant the remaining faults on distinct clips that are not already known-bad, and clear the tags
    # of a few others (the real annotations leave many clips untagged).
    free = [i for i, clip in enumerate(clips) if not clip.fault]
    picks = rng.choice(free, size=3 + max(1, n_clips // 20), replace=False)
    for index, fault in zip(picks[:3], ("empty", "corrupt", "missing")):
        clips[index] = _replace(clips[index], fault=fault)
    for index in picks[3:]:
        clips[index] = _replace(clips[index], tags=())
    return clips


def _replace(clip: Clip, **changes) -> Clip:
    return Clip(**{**clip.__dict__, **changes})


def recipes_for(tags: Sequence[str], table: Mapping[str, str], available: Sequence[str]) -> list[str]:
    """The renderable recipes of `tags` (via `table`), unique, in the order of `tags`, limited to `available`.

    Order matters: music_synth takes the tempo from the first genre, so the style's own tag leads.
    """
    usable = set(available)
    return list(dict.fromkeys(table[t] for t in tags if t in table and table[t] in usable))


def clip_seed(seed: int, key: int) -> int:
    """A per-clip seed that depends only on the run's seed and the clip's id."""
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0])


def render_to_mp3(job: tuple[str, list[str], int, float, int, int]) -> str:
    """Render one clip with `msd.miniature.music_synth.render_track` and write it as mp3 atomically.

    Args:
        job: (path, recipe tags, seed, duration_s, sample_rate in Hz, channels 1 or 2).

    Returns:
        The path written (an existing file is kept: reruns resume).
    """
    from msd.miniature.music_synth import render_track  # the synthesiser is only needed when audio is written

    path, recipes, seed, duration_s, sample_rate, channels = job
    if Path(path).is_file():
        return path
    audio = render_track(recipes, seed=seed, duration_s=duration_s, sample_rate=sample_rate)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if channels == 1:
        audio = audio.mean(axis=1)
    else:
        audio = np.repeat(audio, 2, axis=1) if audio.shape[1] == 1 else audio[:, :2]
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sample_rate, format="MP3")
    return path


def write_fault(path: Path, fault: str, rng: np.random.Generator) -> None:
    """Plant a fault: a 0-byte file ("empty", "known-bad"), random bytes ("corrupt"), or no file ("missing")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fault in ("empty", "known-bad"):
        path.write_bytes(b"")
    elif fault == "corrupt":
        path.write_bytes(rng.bytes(4096))
    elif fault == "missing" and path.exists():
        path.unlink()


def write_quoted_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    """Write a tab-separated file with every field quoted, as MagnaTagATune's CSVs are, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def generate(out_dir: str | Path, *, n_clips: int = 64, seed: int = 0, duration_s: float = CLIP_S, jobs: int = 1,
             quiet: bool = False, overwrite: bool = False) -> dict[str, dict]:
    """Write a miniature MagnaTagATune into `out_dir` (see the module docstring).

    Returns:
        The manifest: str(clip_id) -> {"mp3_path", "tags", "recipes", "fault", "artist", "folder"}.
    """
    from msd.miniature.music_synth import TAG_RECIPES

    out_dir = Path(out_dir)
    start_corpus(out_dir, out_dir / ANNOTATIONS, overwrite)  # written last: present only when a run finished
    if duration_s <= 0:
        raise ConfigError(f"--duration-s must be positive, got {duration_s}")
    clips = plan_clips(n_clips, seed)
    tag_names = read_list_txt(MTT_TAGS_TXT)
    unknown = sorted({t for clip in clips for t in clip.tags} - set(tag_names))
    if unknown:  # a style table naming a tag that MTT does not have is a bug here, not bad input
        raise RuntimeError(f"style tags not in {MTT_TAGS_TXT}: {unknown}")
    fault_rng = np.random.default_rng([seed, 1])
    jobs_to_render = []
    for clip in clips:
        path = out_dir / clip.mp3_path
        if clip.fault:
            write_fault(path, clip.fault, fault_rng)
        elif overwrite or not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            if overwrite and path.exists():
                path.unlink()
            jobs_to_render.append((str(path), recipes_for(clip.tags, MTT_RECIPES, list(TAG_RECIPES)),
                                   clip_seed(seed, clip.clip_id), duration_s, SAMPLE_RATE, 1))
    for folder in FOLDERS:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    list(parallel_map(render_to_mp3, jobs_to_render, jobs=jobs, desc="rendering MTT clips", quiet=quiet))

    index = {name: i for i, name in enumerate(tag_names)}
    annotation_rows = []
    for clip in clips:
        row = [0] * len(tag_names)
        for tag in clip.tags:
            row[index[tag]] = 1
        annotation_rows.append([clip.clip_id, *row, clip.mp3_path])
    info_rows = [[clip.clip_id, clip.track_number, clip.title, clip.artist, clip.album,
                  f"http://www.magnatune.com/artists/albums/{slug(clip.album)}/",
                  30 * clip.segment, 30 * clip.segment + 29,
                  f"http://he3.magnatune.com/all/{clip.track_number:02d}--{slug(clip.title)}--{slug(clip.artist)}.mp3",
                  clip.mp3_path] for clip in clips]
    manifest = {str(clip.clip_id): {"mp3_path": clip.mp3_path, "tags": list(clip.tags),
                                    "recipes": recipes_for(clip.tags, MTT_RECIPES, list(TAG_RECIPES)),
                                    "fault": clip.fault, "artist": clip.artist, "folder": clip.folder}
                for clip in clips}
    write_json_atomic(out_dir / MANIFEST, manifest)
    write_quoted_tsv(out_dir / CLIP_INFO, CLIP_INFO_COLUMNS, info_rows)
    write_quoted_tsv(out_dir / ANNOTATIONS, ["clip_id", *tag_names, "mp3_path"], annotation_rows)
    log.info("wrote %d clips (%d faults) to %s", len(clips), sum(bool(c.fault) for c in clips), out_dir)
    return manifest


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "orpheus synthetic-mtt",
        "Write a miniature MagnaTagATune (annotations_final.csv, clip_info_final.csv, audio folders 0..f of "
        "mono 16 kHz mp3s rendered from the tags) with the real release's faults.",
        "examples:\n"
        "  orpheus synthetic-mtt mini_mtt --clips 64 --seed 0\n"
        "  orpheus synthetic-mtt mini_mtt_short --clips 32 --duration-s 5 --jobs 2\n"
        "  orpheus mtt mini_clean --root-dir mini_mtt --merge-synonyms --top 50")
    parser.add_argument("out_dir", help="output folder (the MTT root)")
    parser.add_argument("--clips", type=int, default=64, help="number of clips (at least 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    parser.add_argument("--duration-s", type=float, default=CLIP_S, help="clip length in seconds")
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def command(args: argparse.Namespace) -> int:
        manifest = generate(args.out_dir, n_clips=args.clips, seed=args.seed, duration_s=args.duration_s,
                            jobs=args.jobs, quiet=args.quiet, overwrite=args.overwrite)
        faults = sum(bool(entry["fault"]) for entry in manifest.values())
        print(f"wrote {len(manifest)} MagnaTagATune clips ({faults} planted faults) to {args.out_dir}")
        return 0

    return run_main(parser, argv, command)
