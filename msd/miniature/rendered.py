"""A corpus that sounds like music: MIDI pieces rendered with FluidSynth through General MIDI SoundFonts.

    orpheus rendered OUT_DIR --clips N --seed S [--soundfont timgm6mb|musescore|FILE.sf2]
                           [--pool main|heldout] [--length-s 30] [--jobs J]

Each clip is a work of the `music21` corpus or a song generated here (`msd.miniature.arrangements`),
each part played by an instrument drawn from a family, with drum parts added; it is written as MIDI,
rendered by the `fluidsynth` command with drawn reverb, chorus and gain, then mixed (level, sometimes
a filter) into a 44.1 kHz stereo mp3.

Outputs in OUT_DIR:
    audio/NNNNN.mp3  the clips (30 s by default)
    labels.csv       file,tags,artist,style,soundfont: the input of `orpheus labels`. `tags` are the
                     instrument families (`arrangements.TAGS`, MagnaTagATune's names) that sound for at least
                     a quarter of the clip (violin and cello also count as strings), separated by `;`;
                     `artist` is the source piece, so a piece never sits in two splits
    skipped.csv      index,piece,reason: clips that could not be made (a work music21 cannot read, a render
                     that failed, no family sounding for a quarter of the clip)
    render.json      the settings; a rerun with the same settings renders only the missing clips (a
                     corpus of N clips is the first N clips of a larger one)

The corpus is a function of (seed, pool, clips, soundfont, length): pieces are chosen from the pool by
the seed. `--pool heldout` draws from works the main pool never uses (a SHA-256 of the work's name
decides), so renders of other pieces with the other SoundFont make an honest held-out set.
"""

from __future__ import annotations


import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from msd.miniature.arrangements import (TAGS, Arrangement, corpus_arrangement, family_fractions,
                                        generated_song, stable_seed, write_midi)
from msd.miniature import start_corpus
from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.errors import ConfigError, MissingDependencyError, OutputExistsError
from orpheus.files import atomic_path, write_csv_atomic, write_json_atomic
from orpheus.parallel import parallel_map

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100
SOUNDFONTS = {  # Debian packages timgm6mb-soundfont and musescore-general-soundfont-small
    "timgm6mb": Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    "musescore": Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
}
SOUNDFONT_PACKAGES = {"timgm6mb": "timgm6mb-soundfont", "musescore": "musescore-general-soundfont-small"}
POOLS = ("main", "heldout")
HELDOUT_SHARE = 0.25            # of the corpus works (and of nothing else: generated songs differ by pool)
MIN_FRACTION = 0.25             # a family is a label when it sounds for at least this share of the clip
PARENTS = {"violin": "strings", "cello": "strings"}   # a solo violin or cello is a string instrument too
CORPUS_SHARE = 0.5              # of the clips, the rest are generated songs
CORPUS_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")
CORPUS_MAX_BYTES = 120_000      # larger works take music21 tens of seconds to parse
LABEL_COLUMNS = ("file", "tags", "artist", "style", "soundfont")


@dataclass(frozen=True)
class ClipJob:
    """One clip to make: `piece` is a corpus path (relative to music21's corpus) or a generated song's name."""
    index: int
    seed: int
    pool: str
    piece: str
    corpus: bool
    soundfont: str
    out_path: str
    length_s: float


@dataclass(frozen=True)
class ClipResult:
    index: int
    file: str
    piece: str
    style: str
    tags: tuple[str, ...]
    error: str = ""


# ------------------------------------------------------------------------------------------ sources
def corpus_dir() -> Path:
    from music21 import corpus
    return Path(corpus.getComposer("bach")[0]).parents[1]


def corpus_pool(pool: str) -> list[str]:
    """The music21 corpus works of `pool`, sorted: single-score files music21 parses in about a second."""
    try:
        from music21 import corpus
    except ImportError as err:
        raise MissingDependencyError("the rendered corpus needs music21: pip install 'orpheus-tagger[rendered]'") from err
    root = corpus_dir()
    names = sorted(str(Path(p).relative_to(root)) for p in corpus.getPaths()
                   if Path(p).suffix in CORPUS_SUFFIXES and Path(p).stat().st_size <= CORPUS_MAX_BYTES)
    return [n for n in names if piece_pool(n) == pool]


def piece_pool(piece: str) -> str:
    """"heldout" for a quarter of the works (by SHA-256 of the name), else "main"."""
    share = int.from_bytes(hashlib.sha256(piece.encode()).digest()[:4], "big") / 2 ** 32
    return "heldout" if share < HELDOUT_SHARE else "main"


def read_corpus_voices(piece: str) -> list[list[tuple[float, float, int]]]:
    """The parts of corpus work `piece`, highest first: (onset, duration, pitch) rows, times in quarter notes."""
    from music21 import converter, stream
    score = converter.parse(str(corpus_dir() / piece), forceSource=True)
    if isinstance(score, stream.Opus):
        score = score.scores[0]
    voices = []
    for part in score.parts if score.parts else [score]:
        rows = [(float(n.offset), float(n.duration.quarterLength), int(p.midi))
                for n in part.flatten().notes if n.duration.quarterLength > 0 for p in n.pitches]
        if rows:
            voices.append(sorted(rows))
    if not voices:
        raise ValueError("no notes")
    return sorted(voices, key=lambda v: -float(np.mean([p for _, _, p in v])))


def plan(clips: int, seed: int, pool: str) -> list[tuple[str, bool]]:
    """(piece, is_corpus) of each clip: half from the pool's works in a seeded order, half generated."""
    rng = np.random.default_rng(stable_seed("rendered-plan", seed, pool))
    works = corpus_pool(pool)
    order = [works[i] for i in rng.permutation(len(works))]
    out, used = [], 0
    for index in range(clips):
        if rng.random() < CORPUS_SHARE and used < len(order):
            out.append((order[used], True))
            used += 1
        else:
            out.append((f"generated/{pool}-{seed}-{index:05d}", False))
    return out


def arrangement_of(job: ClipJob) -> Arrangement:
    rng = np.random.default_rng(stable_seed("rendered-clip", job.seed, job.pool, job.index, job.piece))
    if job.corpus:
        return corpus_arrangement(job.piece, read_corpus_voices(job.piece), rng, job.length_s)
    return generated_song(job.piece, rng, job.length_s)


def labels_of(arrangement: Arrangement, length_s: float) -> tuple[str, ...]:
    """The families sounding for at least `MIN_FRACTION` of the clip, in `TAGS` order; `strings` also
    when a violin or cello does (MagnaTagATune tags bowed solos `strings` as well)."""
    fractions = family_fractions(arrangement, length_s)
    tags = {tag for tag in TAGS if fractions.get(tag, 0.0) >= MIN_FRACTION}
    tags |= {PARENTS[tag] for tag in tags if tag in PARENTS}
    return tuple(tag for tag in TAGS if tag in tags)


# ------------------------------------------------------------------------------------------ rendering
def soundfont_path(name: str) -> Path:
    """A SoundFont by short name (`SOUNDFONTS`) or path; a clear error naming the package when absent."""
    path = SOUNDFONTS.get(name, Path(name))
    if not path.is_file():
        hint = (f"install it with: apt-get install {SOUNDFONT_PACKAGES[name]}" if name in SOUNDFONT_PACKAGES
                else f"give an .sf2/.sf3 file or one of {', '.join(SOUNDFONTS)}")
        raise MissingDependencyError(f"{path}: SoundFont not found; {hint}")
    return path


def fluidsynth_command(midi: Path, wav: Path, soundfont: Path, rng: np.random.Generator) -> list[str]:
    """The FluidSynth command for one clip, with drawn gain, reverb and chorus."""
    reverb = rng.random() < 0.85
    chorus = rng.random() < 0.5
    settings = {
        "synth.reverb.active": int(reverb),
        "synth.reverb.room-size": round(float(rng.uniform(0.05, 0.95)), 3),
        "synth.reverb.damp": round(float(rng.uniform(0.0, 0.9)), 3),
        "synth.reverb.width": round(float(rng.uniform(0.2, 1.0)), 3),
        "synth.reverb.level": round(float(rng.uniform(0.2, 1.0)), 3),
        "synth.chorus.active": int(chorus),
        "synth.chorus.depth": round(float(rng.uniform(2.0, 20.0)), 3),
        "synth.chorus.level": round(float(rng.uniform(0.5, 3.0)), 3),
        "synth.chorus.speed": round(float(rng.uniform(0.1, 1.0)), 3),
        "synth.cpu-cores": 1, "synth.polyphony": 256,
        "synth.dynamic-sample-loading": 1,   # decode only the samples the piece plays (sf3: 2x faster)
    }
    command = ["fluidsynth", "-ni", "-q", "-F", str(wav), "-T", "wav", "-O", "float", "-r", str(SAMPLE_RATE),
               "-g", f"{rng.uniform(0.3, 0.9):.3f}"]
    for key, value in settings.items():
        command += ["-o", f"{key}={value}"]
    return command + [str(soundfont), str(midi)]


def master(audio: np.ndarray, length_s: float, rng: np.random.Generator) -> np.ndarray:
    """Crop or pad to `length_s`, sometimes filter (a dull or thin recording), fade out, set a drawn level.

    audio: float32 [n_samples, 2] at 44.1 kHz. Returns float32 [length_s * 44100, 2] in [-1, 1].
    """
    n = int(round(length_s * SAMPLE_RATE))
    audio = np.pad(audio[:n], ((0, max(0, n - len(audio))), (0, 0))).astype(np.float64)
    roll = rng.random()
    if roll < 0.3:
        from scipy.signal import butter, sosfilt
        cutoff = float(rng.uniform(2500, 9000)) if roll < 0.2 else float(rng.uniform(80, 300))
        sos = butter(2, cutoff, btype="low" if roll < 0.2 else "high", fs=SAMPLE_RATE, output="sos")
        audio = sosfilt(sos, audio, axis=0)
    fade = min(n, int(0.5 * SAMPLE_RATE))
    audio[n - fade:] *= np.linspace(1.0, 0.0, fade)[:, None]
    peak = float(np.max(np.abs(audio))) or 1.0
    level = 10 ** (float(rng.uniform(-14.0, -1.0)) / 20)
    return np.clip(audio * (level / peak), -1.0, 1.0).astype(np.float32)


def make_clip(job: ClipJob) -> ClipResult:
    """Arrange, render and encode one clip (rendering skipped when its mp3 exists); errors are returned."""
    file = Path(job.out_path).name
    try:
        arrangement = arrangement_of(job)
    except Exception as err:  # noqa: BLE001 - music21 raises many kinds of errors for a work it cannot read
        return ClipResult(job.index, file, job.piece, "", (), f"music21 cannot read the work ({err})")
    tags = labels_of(arrangement, job.length_s)
    result = ClipResult(job.index, f"audio/{file}", job.piece, arrangement.style, tags)
    if not tags:
        return ClipResult(job.index, file, job.piece, arrangement.style, (),
                          f"no instrument family sounds for {MIN_FRACTION:.0%} of the clip")
    out = Path(job.out_path)
    if out.is_file():
        return result
    rng = np.random.default_rng(stable_seed("rendered-mix", job.seed, job.pool, job.index))
    with tempfile.TemporaryDirectory(prefix="orpheus-render-") as tmp:
        midi, wav = Path(tmp) / "clip.mid", Path(tmp) / "clip.wav"
        write_midi(arrangement, midi)
        command = fluidsynth_command(midi, wav, soundfont_path(job.soundfont), rng)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not wav.is_file():
            message = (done.stderr or done.stdout).strip().splitlines()
            return ClipResult(job.index, file, job.piece, arrangement.style, (),
                              f"fluidsynth failed ({message[-1] if message else done.returncode})")
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    audio = master(audio if audio.shape[1] == 2 else np.repeat(audio[:, :1], 2, axis=1), job.length_s, rng)
    with atomic_path(out) as tmp_out:
        sf.write(tmp_out, audio, SAMPLE_RATE, format="MP3")
    return result


# ---------------------------------------------------------------------------------------------- run
def run(out_dir: str | Path, *, clips: int, seed: int = 0, pool: str = "main", soundfont: str = "timgm6mb",
        length_s: float = 30.0, jobs: int = 1, overwrite: bool = False, quiet: bool = False) -> list[ClipResult]:
    """Render `clips` clips into `out_dir` (see the module docstring); returns the clips made.

    Raises:
        ConfigError: bad settings. MissingDependencyError: no fluidsynth, SoundFont or music21.
        OutputExistsError: `out_dir` holds a corpus made with other settings (and not `overwrite`).
    """
    if clips < 1 or length_s < 1.0:
        raise ConfigError("--clips must be at least 1 and --length-s at least 1")
    if pool not in POOLS:
        raise ConfigError(f"--pool must be one of {', '.join(POOLS)}")
    if shutil.which("fluidsynth") is None:
        raise MissingDependencyError("the fluidsynth command is not installed; install it with: "
                                     "apt-get install fluidsynth")
    soundfont_path(soundfont)
    out_dir = Path(out_dir)
    # Clip i depends on the settings and i only, so a corpus of N clips is the first N of a larger one.
    settings = {"seed": seed, "pool": pool, "soundfont": soundfont, "length_s": length_s}
    record = out_dir / "render.json"
    start_corpus(out_dir)   # never a folder Orpheus did not write
    if record.is_file() and _read_settings(record) != settings:
        if not overwrite:
            raise OutputExistsError(f"{record}: {out_dir} holds a corpus rendered with other settings; pass "
                                    "--overwrite to replace it or choose another OUT_DIR")
        shutil.rmtree(out_dir)
        start_corpus(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, settings)
    jobs_list = [ClipJob(i, seed, pool, piece, is_corpus, soundfont, str(out_dir / "audio" / f"{i:05d}.mp3"),
                         length_s) for i, (piece, is_corpus) in enumerate(plan(clips, seed, pool))]
    for extra in sorted((out_dir / "audio").glob("*.mp3")):   # clips of an earlier, larger corpus
        if not extra.stem.isdigit() or int(extra.stem) >= clips:
            extra.unlink()
    results = list(parallel_map(make_clip, jobs_list, jobs=jobs, desc="rendering", quiet=quiet, chunksize=1))
    made = [r for r in results if not r.error]
    write_csv_atomic(out_dir / "labels.csv", LABEL_COLUMNS,
                     [(r.file, ";".join(r.tags), r.piece, r.style, soundfont) for r in made])
    write_csv_atomic(out_dir / "skipped.csv", ("index", "piece", "reason"),
                     [(r.index, r.piece, r.error) for r in results if r.error])
    counts = {tag: sum(tag in r.tags for r in made) for tag in TAGS}
    log.info("%s: %d clips (%d skipped, see skipped.csv); clips per tag: %s", out_dir, len(made),
             len(results) - len(made), ", ".join(f"{t} {c}" for t, c in counts.items() if c))
    return made


def _read_settings(record: Path) -> dict | None:
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {key: saved.get(key) for key in ("seed", "pool", "soundfont", "length_s")}


EPILOG = """examples:
  orpheus rendered data/rendered --clips 300 --seed 0
  orpheus rendered data/rendered-heldout --clips 100 --seed 1 --pool heldout --soundfont musescore
  orpheus labels data/rendered-clean --labels data/rendered/labels.csv --root-dir data/rendered

SoundFonts: timgm6mb (apt-get install timgm6mb-soundfont), musescore
(apt-get install musescore-general-soundfont-small), or any .sf2/.sf3 file."""


def build_parser():
    parser = make_parser("orpheus rendered", "Render a labelled corpus of MIDI pieces with FluidSynth.", EPILOG)
    parser.add_argument("out_dir", type=Path, help="output folder (audio/, labels.csv, skipped.csv, render.json)")
    parser.add_argument("--clips", type=int, required=True, help="clips to render")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the corpus is a function of it")
    parser.add_argument("--pool", choices=POOLS, default="main",
                        help="corpus works to draw from: heldout works are never used by the main pool")
    parser.add_argument("--soundfont", default="timgm6mb",
                        help=f"General MIDI SoundFont: {' or '.join(SOUNDFONTS)}, or a .sf2/.sf3 path")
    parser.add_argument("--length-s", type=float, default=30.0, help="clip length in seconds")
    add_common_args(parser, jobs=True, overwrite=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def call(args) -> int:
        run(args.out_dir, clips=args.clips, seed=args.seed, pool=args.pool, soundfont=args.soundfont,
            length_s=args.length_s, jobs=args.jobs, overwrite=args.overwrite, quiet=args.quiet)
        print(args.out_dir / "labels.csv")
        return 0
    return run_main(build_parser(), argv, call)
