"""`test_model.py predict` and `test` through `main(argv)`, on real clips and tiny real shards."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from orpheus import test_model
from orpheus.tagging import Tagger
from tests.fixtures_tagging import TINY_TAGS, link_clips, tiny_run_dir  # noqa: F401  (fixture)

CLIPS = ["asc_frontiers.ogg", "fof_armygeddon_mix.ogg"]


@pytest.fixture()
def folder(tmp_path, shared_audio_dir):
    """music/b/<clip0>, music/a/<clip1>, music/a/broken.mp3 (not audio), music/notes.txt."""
    link_clips(shared_audio_dir, tmp_path / "music" / "b", [CLIPS[0]])
    link_clips(shared_audio_dir, tmp_path / "music" / "a", [CLIPS[1]])
    (tmp_path / "music" / "a" / "broken.mp3").write_bytes(b"ID3" + b"\x00" * 500)
    (tmp_path / "music" / "notes.txt").write_text("skip me")
    return tmp_path / "music"


def predict(capsys, run_dir, *args):
    status = test_model.main(["predict", "--run-dir", str(run_dir), "--quiet", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_json_all_tags_sorted_bad_file_reported(capsys, tiny_run_dir, folder):  # noqa: F811
    status, out, err = predict(capsys, tiny_run_dir, "--mp3", folder, "--format", "json", "--jobs", "2")
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 1 and "broken.mp3" in err
    assert [r["file"] for r in records] == [str(folder / "a" / "broken.mp3"), str(folder / "a" / CLIPS[1]),
                                            str(folder / "b" / CLIPS[0])]
    assert "error" in records[0] and "tags" not in records[0]
    expected = Tagger(tiny_run_dir).tag_files([folder / "b" / CLIPS[0]], quiet=True)
    expected_scores = dict(zip(TINY_TAGS, next(expected).scores.tolist()))
    for record in records[1:]:
        probabilities = list(record["tags"].values())
        assert sorted(record["tags"]) == sorted(TINY_TAGS)
        assert probabilities == sorted(probabilities, reverse=True)
    assert records[2]["tags"] == pytest.approx(expected_scores, abs=1e-6)


def test_csv_top_and_table_threshold(capsys, tiny_run_dir, shared_audio_dir):  # noqa: F811
    clip = shared_audio_dir / CLIPS[0]
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", clip, "--format", "csv", "--top", "2")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and [r["rank"] for r in rows] == ["1", "2"]
    scores = dict(zip(TINY_TAGS, next(Tagger(tiny_run_dir).tag_files([clip], quiet=True)).scores))
    best = sorted(scores, key=lambda t: -scores[t])
    assert [r["tag"] for r in rows] == best[:2]
    assert float(rows[0]["probability"]) == pytest.approx(scores[best[0]], abs=1e-6)
    threshold = (scores[best[2]] + scores[best[3]]) / 2  # exactly three tags above it
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", clip, "--threshold", threshold)
    lines = out.strip().splitlines()
    assert lines[0] == str(clip) and [line.split()[0] for line in lines[1:]] == best[:3]


def test_taggram_embeddings_window_and_aggregate(capsys, tiny_run_dir, shared_audio_dir, tmp_path):  # noqa: F811
    clip = shared_audio_dir / CLIPS[1]
    png, npy = tmp_path / "taggram.png", tmp_path / "emb.npy"
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", clip, "--format", "json", "--taggram", png,
                             "--embeddings", npy, "--hop", "1.5", "--aggregate", "max")
    record = json.loads(out)
    assert status == 0 and png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
    probabilities = np.array(record["taggram"]["probabilities"])
    assert probabilities.shape == (6, 6)  # starts every 94 frames over 626 frames, the last end-aligned
    assert record["taggram"]["window_start_s"][-1] == pytest.approx(439 * 256 / 16000, abs=1e-3)
    maxima = dict(zip(record["taggram"]["tags"], probabilities.max(axis=0)))
    assert record["tags"] == pytest.approx(maxima, abs=1e-5)
    assert np.load(npy).shape == (6, 16)
    status, _, err = predict(capsys, tiny_run_dir, "--mp3", clip, "--embeddings", npy)
    assert status == 1 and "--overwrite" in err
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", clip, "--format", "json", "--window", "6", "--taggram",
                             tmp_path / "t6.png")
    assert status == 0 and len(json.loads(out)["taggram"]["window_start_s"]) == 2


def test_missing_input_is_one_line_error(capsys, tiny_run_dir, tmp_path):  # noqa: F811
    status, _, err = predict(capsys, tiny_run_dir, "--mp3", tmp_path / "nothing.mp3")
    assert status == 1 and err.strip().startswith("test_model.py: error:") and "nothing.mp3" in err
    assert len(err.strip().splitlines()) == 1


def test_default_model_is_pretrained_msd_musicnn(capsys, shared_audio_dir):
    pytest.importorskip("orpheus.pretrained")
    status = test_model.main(["predict", "--mp3", str(shared_audio_dir / CLIPS[1]), "--format", "json", "--quiet"])
    record = json.loads(capsys.readouterr().out)
    assert status == 0 and len(record["tags"]) == 50
    assert next(iter(record["tags"])) in ("metal", "heavy metal", "rock", "hard rock")
