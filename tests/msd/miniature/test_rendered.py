"""The rendered corpus (`msd.miniature.rendered`, `msd.miniature.arrangements`): real FluidSynth renders."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from msd.miniature import arrangements as arr
from msd.miniature import rendered

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None or not rendered.SOUNDFONTS["timgm6mb"].is_file(),
                                reason="needs the fluidsynth command and timgm6mb-soundfont (Makefile APT_PACKAGES)")
LENGTH_S = 4.0


def read_labels(out_dir: Path) -> list[dict]:
    with open(out_dir / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def drum_note_ons(midi: bytes) -> int:
    """Note-on events on channel 10 in a format-0 file written by `arrangements.midi_bytes`."""
    data, i, count, status = midi[22:], 0, 0, 0
    while i < len(data):
        while data[i] & 0x80:       # delta time (variable length)
            i += 1
        i += 1
        if data[i] == 0xFF:         # meta event
            i += 3 + data[i + 2]
            continue
        status = data[i]
        length = 2 if status >> 4 in (0x8, 0x9, 0xB) else 1
        count += status == 0x99 and data[i + 2] > 0
        i += 1 + length
    return count


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    rendered.run(out, clips=3, seed=5, length_s=LENGTH_S, jobs=1, quiet=True)
    return out


def test_clips_are_stereo_mp3s_of_the_asked_length(corpus):
    rows = read_labels(corpus)
    assert len(rows) == 3 and [r["file"] for r in rows] == [f"audio/{i:05d}.mp3" for i in range(3)]
    for row in rows:
        audio, rate = sf.read(corpus / row["file"])
        assert rate == 44100 and audio.shape[1] == 2
        assert abs(len(audio) / rate - LENGTH_S) < 0.1
        assert np.sqrt(np.mean(audio ** 2)) > 1e-3       # music, not silence
        assert row["tags"] and set(row["tags"].split(";")) <= set(arr.TAGS) and row["artist"]


def test_same_seed_same_bytes(corpus, tmp_path):
    again = tmp_path / "again"
    rendered.run(again, clips=3, seed=5, length_s=LENGTH_S, jobs=1, quiet=True)
    assert (again / "labels.csv").read_bytes() == (corpus / "labels.csv").read_bytes()
    for row in read_labels(corpus):
        assert (again / row["file"]).read_bytes() == (corpus / row["file"]).read_bytes()
    other = tmp_path / "other"
    rendered.run(other, clips=1, seed=6, length_s=LENGTH_S, jobs=1, quiet=True)
    assert (other / "audio/00000.mp3").read_bytes() != (corpus / "audio/00000.mp3").read_bytes()


def test_labels_are_what_sounds(corpus):
    """Each label is a family with a part in the clip's MIDI; drums <=> drum notes on channel 10."""
    plan = rendered.plan(3, 5, "main")
    for index, row in enumerate(read_labels(corpus)):
        piece, is_corpus = plan[index]
        job = rendered.ClipJob(index, 5, "main", piece, is_corpus, "timgm6mb", "", LENGTH_S)
        arrangement = rendered.arrangement_of(job)
        tags = row["tags"].split(";")
        fractions = arr.family_fractions(arrangement, LENGTH_S)
        for tag in tags:
            assert fractions.get(tag, 0) >= 0.25 or tag == "strings" and {"violin", "cello"} & set(tags)
        assert ("drums" in tags) == (drum_note_ons(arr.midi_bytes(arrangement)) > 0 and fractions["drums"] >= 0.25)


def test_quarter_of_the_clip_rule():
    notes = [(0.0, 1.0, 60, 90), (0.5, 1.0, 64, 90), (5.0, 0.5, 67, 90)]
    assert arr.sounding_fraction(notes, 10.0) == pytest.approx(0.2)    # [0, 1.5) and [5, 5.5)
    drums = arr.Part("drums", 0, [(t, 0.25, arr.KICK, 100) for t in np.arange(0, 2.0, 0.25)])  # 2 s of 10
    violin = arr.Part("violin", 40, [(0.0, 3.0, 70, 80)])
    assert rendered.labels_of(arr.Arrangement("p", "test", [drums, violin]), 10.0) == ("violin", "strings")
    drums.notes += [(t, 0.25, arr.SNARE, 100) for t in np.arange(2.0, 3.0, 0.25)]
    assert rendered.labels_of(arr.Arrangement("p", "test", [drums, violin]), 10.0) == (
        "violin", "strings", "drums")


def test_pools_are_disjoint_and_a_small_corpus_is_a_prefix():
    main, heldout = set(rendered.corpus_pool("main")), set(rendered.corpus_pool("heldout"))
    assert main and heldout and not main & heldout and len(heldout) < len(main)
    assert rendered.plan(5, 2, "main") == rendered.plan(12, 2, "main")[:5]
    assert not {p for p, c in rendered.plan(40, 2, "heldout") if c} & main


def test_one_line_errors(tmp_path, capsys):
    assert rendered.main([str(tmp_path / "x"), "--clips", "1", "--soundfont", "/nowhere.sf2", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "SoundFont not found" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "render.json").write_text(json.dumps({"seed": 9, "pool": "main", "soundfont": "timgm6mb",
                                                            "length_s": 30.0}))
    assert rendered.main([str(tmp_path / "y"), "--clips", "1", "--quiet"]) == 1
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_rendered_corpus_end_to_end(tmp_path):
    """30 s renders -> orpheus labels -> musicnn-preset shards -> fine-tuning MTT_musicnn for a few steps."""
    corpus, clean, shards, run = (tmp_path / n for n in ("corpus", "clean", "shards", "run"))

    def call(*argv):
        done = subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]

    call("-m", "orpheus", "rendered", corpus, "--clips", "6", "--seed", "0", "--jobs", "2", "--quiet")
    call("-m", "orpheus", "labels", clean, "--labels", corpus / "labels.csv", "--root-dir", corpus, "--split", "50", "50", "0")
    call("tfrecords/preprocessing.py", "log-mel-spectrogram", shards, "--csv-path", clean / "ultimate.csv",
         "--tag-path", clean / "clean_tags.db", "--root-dir", corpus, "--preset", "musicnn",
         "--split-file", clean / "split.csv", "--num-files", "2", "--quiet")
    call("orpheus/training.py", "log-mel-spectrogram", "--tfrecords-dir", shards, "--config",
         ROOT / "configs" / "finetune_musicnn.json", "--epochs", "1", "--steps-per-epoch", "2", "--run-dir", run,
         "--quiet")
    info = json.loads((run / "run.json").read_text())
    assert info["normalise"] == "none" and info["features"]["preset"] == "musicnn" and "MTT_musicnn" in info["source"]
    assert set(info["tags"]) <= set(arr.TAGS) and (run / "model.keras").is_file()
