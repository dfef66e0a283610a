"""The beets plugin (beetsplug/orpheus.py) in real beets: `beet import -A` of generated mp3/flac/ogg files into a
temporary library (BEETSDIR), `beet orpheus`, queries on the stored fields, `beet write`, then the files read
back with mutagen and the tools people use (exiftool, ffprobe, mediainfo, where installed)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import mutagen
import pytest
from mutagen.id3 import ID3, TCON, TIT2, TPE1

from tests.fixtures_audio import write_clip
from tests.fixtures_tagging import TINY_TAGS, needs_musicnn, tiny_run_dir  # noqa: F401  (fixture)
from tests.fixtures_tags import exiftool_json, ffprobe_tags, mediainfo_general

beets = pytest.importorskip("beets", reason="beets is not installed: pip install orpheus-tagger[beets]")

ROOT = Path(__file__).resolve().parents[1]
BEET = [sys.executable, "-c", "import sys; from beets.ui import main; sys.exit(main())"]
GENRES, MOODS = ["rock", "pop", "jazz", "metal"], ["ambient", "electronic"]


def beet(beetsdir: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "BEETSDIR": str(beetsdir), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*BEET, *map(str, args)], env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def make_library(tmp_path: Path, run_dir: Path, **orpheus) -> Path:
    beetsdir = tmp_path / "beets"
    beetsdir.mkdir()
    config = {"directory": str(tmp_path / "library"), "library": str(beetsdir / "library.db"),
              "plugins": "orpheus", "import": {"copy": True, "write": True, "quiet": True},
              "paths": {"default": "$title"},
              "orpheus": {"run_dir": str(run_dir), "top": len(TINY_TAGS), "genre": True, "mood": True,
                          "genre_tags": GENRES, "mood_tags": MOODS, **orpheus}}
    (beetsdir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    return beetsdir


def items(beetsdir: Path, key: str = "title") -> dict[str, dict]:
    """title (or `key`) -> {field: value} of every item, fixed and flexible fields, from beets' SQLite file."""
    directory = Path(json.loads((beetsdir / "config.yaml").read_text())["directory"])
    with sqlite3.connect(beetsdir / "library.db") as db:  # beets 2.14 keeps paths relative to the library folder
        rows = {i: {"title": t, "path": str(directory / os.fsdecode(p)), "genres": g}
                for i, t, p, g in db.execute("SELECT id, title, path, genres FROM items")}
        for entity, name, value in db.execute("SELECT entity_id, key, value FROM item_attributes"):
            rows[entity][name] = value
    return {row[key]: row for row in rows.values()}


def titles(done: subprocess.CompletedProcess) -> list[str]:
    return sorted(line for line in done.stdout.splitlines() if line)


def source_files(folder: Path) -> Path:
    """a.mp3 (an ID3v2.3 tag: artist, title, genre Blues), b.flac, c.ogg: generated music, 3 s each."""
    mp3 = write_clip(folder / "a.mp3", ("jazz",), seed=1, duration_s=3.0)
    tag = ID3()
    tag.add(TIT2(encoding=1, text="a"))
    tag.add(TPE1(encoding=1, text="Band"))
    tag.add(TCON(encoding=1, text="Blues"))
    tag.save(str(mp3), v2_version=3)
    for name, tags, seed in (("b.flac", ("rock",), 2), ("c.ogg", ("ambient",), 3)):
        path = write_clip(folder / name, tags, seed=seed, duration_s=3.0)
        audio = mutagen.File(str(path))
        audio["TITLE"] = path.stem
        audio.save()
    return folder


def test_beet_import_orpheus_query_write_and_read_back(tmp_path, tiny_run_dir):  # noqa: F811
    from orpheus.api import Tagger
    beetsdir = make_library(tmp_path, tiny_run_dir)
    beet(beetsdir, "import", "-A", source_files(tmp_path / "src"))
    assert sorted(items(beetsdir)) == ["a", "b", "c"]
    bad = Path(items(beetsdir)["c"]["path"])
    good_c = bad.read_bytes()
    bad.write_bytes(good_c[:200])  # a file broken after import: logged, the others still tagged

    done = beet(beetsdir, "orpheus", "--no-write")
    assert "c.ogg: not tagged" in done.stderr and "tagging" in done.stderr  # the bad file, the progress bar
    library = items(beetsdir)
    expected = {r.file: r for r in Tagger(run_dir=tiny_run_dir).tag([library[t]["path"] for t in ("a", "b")])}
    for title in ("a", "b"):
        item, result = library[title], expected[library[title]["path"]]
        for tag in TINY_TAGS:  # every tag's probability, a float field, as Orpheus's own API computes it
            assert float(item[f"orpheus_{tag}"]) == pytest.approx(result.tags[tag], abs=2e-4)
        assert item["orpheus_tags"] == "; ".join(result.tags)  # all 6 tags selected, most probable first
        assert item["orpheus_model"].endswith(f"; top {len(TINY_TAGS)}") and " sha256:" in item["orpheus_model"]
        assert item["mood"] == next(t for t in result.tags if t in MOODS)
    assert library["a"]["genres"] == "Blues"  # a genre the user had is kept
    assert library["b"]["genres"] == next(t for t in expected[library["b"]["path"]].tags if t in GENRES)
    assert "orpheus_tags" not in library["c"]
    assert "ORPHEUS_TAGS" not in mutagen.File(library["b"]["path"])  # --no-write: the files are untouched

    # queries on the stored fields: a numeric range on a probability, a substring of the selected tags
    jazz = {t: float(library[t]["orpheus_jazz"]) for t in ("a", "b")}  # SQLite holds flexible fields as text
    cut = max(jazz.values())
    assert titles(beet(beetsdir, "ls", "-f", "$title", f"orpheus_jazz:{cut}..")) == [
        t for t in jazz if jazz[t] >= cut]
    assert titles(beet(beetsdir, "ls", "-f", "$title", f"orpheus_jazz:..{cut - 1e-4}")) == [
        t for t in jazz if jazz[t] < cut]
    assert titles(beet(beetsdir, "ls", "-f", "$title", "orpheus_tags:jazz")) == ["a", "b"]

    # tagged already: skipped; --dry-run --force shows what it would set and changes nothing
    again = beet(beetsdir, "orpheus", "title:b")
    assert "1 items already tagged by this model and selection" in again.stderr
    dry = beet(beetsdir, "orpheus", "--force", "--dry-run", "title:b")
    assert "would set orpheus_tags" in dry.stdout and items(beetsdir) == library

    beet(beetsdir, "write")
    bad.write_bytes(good_c)
    for title in ("a", "b"):
        path, item = Path(library[title]["path"]), library[title]
        audio = mutagen.File(str(path))
        if path.suffix == ".mp3":
            assert audio.tags["TXXX:ORPHEUS_TAGS"].text == [item["orpheus_tags"]]
            assert audio.tags["TMOO"].text == [item["mood"]] and audio.tags["TCON"].text == ["Blues"]
            assert audio.tags["TPE1"].text == ["Band"]
        else:
            assert audio["ORPHEUS_TAGS"] == [item["orpheus_tags"]] and audio["MOOD"] == [item["mood"]]
            assert audio["GENRE"] == [item["genres"]] and audio["ORPHEUS_MODEL"] == [item["orpheus_model"]]
        if shutil.which("ffprobe"):
            probe = {k.upper(): v for k, v in ffprobe_tags(path).items()}
            assert probe["ORPHEUS_TAGS"] == item["orpheus_tags"]
            assert probe["ORPHEUS_MODEL"] == item["orpheus_model"]
        if shutil.which("mediainfo"):
            info = mediainfo_general(path)
            assert info["ORPHEUS_TAGS"] == item["orpheus_tags"] and info["Genre"] == item["genres"]
        if shutil.which("exiftool"):
            shown = exiftool_json(path)
            assert shown["Mood"] == item["mood"] and shown["Genre"] == item["genres"]
            every = set(exiftool_json(path, "-a", "-G4").values())  # mutagen orders the TXXX frames beets writes
            assert {item["orpheus_tags"], f"(ORPHEUS_TAGS) {item['orpheus_tags']}"} & every

    # the import stage (auto: yes) tags what beets imports
    extra = tmp_path / "auto.yaml"
    extra.write_text(json.dumps({"orpheus": {"auto": True}}))
    more = write_clip(tmp_path / "more" / "d.flac", ("metal",), seed=4, duration_s=3.0)
    audio = mutagen.File(str(more))
    audio["TITLE"] = "d"
    audio.save()
    imported = beet(beetsdir, "-c", extra, "import", "-A", "-s", more.parent)  # a singleton: no album to merge
    new = items(beetsdir).get("d")
    assert new is not None, imported.stdout + imported.stderr
    assert new["orpheus_tags"].count("; ") == len(TINY_TAGS) - 1 and "orpheus_metal" in new
    assert mutagen.File(new["path"])["ORPHEUS_TAGS"] == [new["orpheus_tags"]]  # beets wrote it on import


def test_beets_starts_without_loading_a_model(tmp_path, tiny_run_dir):  # noqa: F811
    """`beet ls` with the plugin enabled imports no TensorFlow, Keras, OpenVINO or Orpheus tagging code."""
    beetsdir = make_library(tmp_path, tiny_run_dir)
    code = ("import sys\nfrom beets.ui import main\n"
            "try:\n    main(['ls', 'orpheus_tags:jazz'])\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('tensorflow', 'keras', 'openvino', 'orpheus.tagging.tagger', 'orpheus.api') "
            "if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "BEETSDIR": str(beetsdir), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


@pytest.mark.slow
@needs_musicnn
def test_beets_with_msd_musicnn_on_music_stays_under_1_gb(tmp_path, music_dir):
    """The pretrained MSD_musicnn through beets on music (generated clips; then the real clips where present):
    the same probabilities as orpheus.tag, a genre and a mood from the built-in vocabulary, under 1 GB."""
    import orpheus
    beetsdir = tmp_path / "beets"
    beetsdir.mkdir()
    config = {"directory": str(tmp_path / "library"), "library": str(beetsdir / "library.db"),
              "plugins": "orpheus", "import": {"copy": False, "write": False, "quiet": True,  # the clips stay as
                                                  "duplicate_action": "keep"},
              "orpheus": {"model": "MSD_musicnn", "top": 10, "genre": True, "mood": True}}  # they are
    (beetsdir / "config.yaml").write_text(json.dumps(config))
    beet(beetsdir, "import", "-A", "-s", music_dir)
    beet(beetsdir, "orpheus", "--no-write", "title:__none__")  # converts the model once (not measured)
    # the peak of this process's own memory (VmHWM), not ru_maxrss: Linux carries that over from the parent across
    # fork + exec, so under a full pytest session (TensorFlow and every test module imported, 1.3 GB) it read 1.3 GB
    code = ("import sys\nfrom beets.ui import main\n"
            "try:\n    main(['orpheus', '--no-write'])\nexcept SystemExit:\n    pass\n"
            "print('peak', 1024 * int(next(line.split()[1] for line in open('/proc/self/status') "
            "if line.startswith('VmHWM:'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "BEETSDIR": str(beetsdir), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout.split("peak")[-1])
    library = items(beetsdir, key="path")
    files = sorted(music_dir.iterdir())
    assert len(library) == len(files) and peak < 1e9, (len(library), peak, done.stderr[-3000:])
    expected = {r.file: r for r in orpheus.tag([str(f) for f in files], model="MSD_musicnn")}
    from beetsplug.orpheus import first_of, vocabulary
    words = vocabulary()
    for item in library.values():
        result = expected[item["path"]]
        assert float(item["orpheus_rock"]) == pytest.approx(result.tags["rock"], abs=1e-3)
        assert float(item["orpheus_hard_rock"]) == pytest.approx(result.tags["hard rock"], abs=1e-3)
        selected = list(result.tags)[:10]
        assert item["orpheus_tags"] == "; ".join(selected)
        assert (item["genres"] or None) == first_of(selected, words["genre"])  # the clips had no genre
        assert item.get("mood") == first_of(selected, words["mood"])
    assert sum(bool(item["genres"]) for item in library.values()) >= len(files) // 2
    print(f"{len(files)} items, peak RSS {peak / 1e9:.2f} GB")
