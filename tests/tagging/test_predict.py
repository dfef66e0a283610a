"""`test_model.py predict` and `test` through `main(argv)`, on music clips and tiny real shards.

The clips: generated ones always, the real ones of ../shared/audio too when present (`music_dir`).
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from orpheus.commands import predict_and_test
from orpheus.errors import EXIT_PARTIAL
from orpheus.audio.settings import FeatureSettings
from orpheus.tagging.tagger import TaggingEngine
from tests.fixtures_tagging import TINY_TAGS, link_clips, tiny_run_dir  # noqa: F401  (fixture)

CLIPS = ["asc_frontiers.ogg", "fof_armygeddon_mix.ogg"]


@pytest.fixture()
def folder(tmp_path, music_dir):
    """music/b/<clip0>, music/a/<clip1>, music/a/broken.mp3 (not audio), music/notes.txt."""
    link_clips(music_dir, tmp_path / "music" / "b", [CLIPS[0]])
    link_clips(music_dir, tmp_path / "music" / "a", [CLIPS[1]])
    (tmp_path / "music" / "a" / "broken.mp3").write_bytes(b"ID3" + b"\x00" * 500)
    (tmp_path / "music" / "notes.txt").write_text("skip me")
    return tmp_path / "music"


def predict(capsys, run_dir, *args):
    status = predict_and_test.main(["predict", "--run-dir", str(run_dir), "--quiet", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_json_all_tags_sorted_bad_file_reported(capsys, tiny_run_dir, folder):  # noqa: F811
    status, out, err = predict(capsys, tiny_run_dir, "--mp3", folder, "--format", "json", "--jobs", "2")
    records = [json.loads(line) for line in out.splitlines()]
    assert status == EXIT_PARTIAL and "broken.mp3" in err   # one file of three failed: reported, the others done
    assert err.splitlines()[-1] == "orpheus predict: 1 of 3 files failed; 2 done"
    assert [r["file"] for r in records] == [str(folder / "a" / "broken.mp3"), str(folder / "a" / CLIPS[1]),
                                            str(folder / "b" / CLIPS[0])]
    assert "error" in records[0] and "tags" not in records[0]
    expected = TaggingEngine(tiny_run_dir).tag_files([folder / "b" / CLIPS[0]], quiet=True)
    expected_scores = dict(zip(TINY_TAGS, next(expected).scores.tolist()))
    for record in records[1:]:
        probabilities = list(record["tags"].values())
        assert sorted(record["tags"]) == sorted(TINY_TAGS)
        assert probabilities == sorted(probabilities, reverse=True)
    assert records[2]["tags"] == pytest.approx(expected_scores, abs=1e-6)


def test_csv_top_and_table_threshold(capsys, tiny_run_dir, music_dir):  # noqa: F811
    clip = music_dir / CLIPS[0]
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", clip, "--format", "csv", "--top", "2")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and [r["rank"] for r in rows] == ["1", "2"]
    scores = dict(zip(TINY_TAGS, next(TaggingEngine(tiny_run_dir).tag_files([clip], quiet=True)).scores))
    best = sorted(scores, key=lambda t: -scores[t])
    assert [r["tag"] for r in rows] == best[:2]
    assert float(rows[0]["probability"]) == pytest.approx(scores[best[0]], abs=1e-6)
    threshold = (scores[best[2]] + scores[best[3]]) / 2  # exactly three tags above it
    status, out, _ = predict(capsys, tiny_run_dir, "--mp3", clip, "--threshold", threshold)
    lines = out.strip().splitlines()
    assert lines[0] == str(clip) and [line.split()[0] for line in lines[1:]] == best[:3]


def test_taggram_embeddings_window_and_aggregate(capsys, tiny_run_dir, music_dir, tmp_path):  # noqa: F811
    clip = music_dir / CLIPS[1]
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
    assert status == 1 and err.strip().startswith("orpheus predict: error:") and "nothing.mp3" in err
    assert len(err.strip().splitlines()) == 1


def test_default_model_is_pretrained_msd_musicnn(capsys, music_dir):
    pytest.importorskip("orpheus.models.pretrained")
    status = predict_and_test.main(["predict", "--mp3", str(music_dir / CLIPS[1]), "--format", "json", "--quiet"])
    record = json.loads(capsys.readouterr().out)
    assert status == 0 and len(record["tags"]) == 50
    assert next(iter(record["tags"])) in ("metal", "heavy metal", "rock", "hard rock")


# ---------------------------------------------------------------- test

def write_shards(shard_dir, tags, labels, features, split="test"):
    """A real shard folder: dataset.json + two `split` shards written through orpheus.formats.tfrecord."""
    import tensorflow as tf

    from orpheus.formats.dataset import DatasetInfo, shard_name, write_dataset_info

    from orpheus.formats.tfrecord import to_example
    info = DatasetInfo(features=FeatureSettings("log-mel-spectrogram", 16000, n_mels=96, n_fft=512, hop_length=256,
                                                preset="musicnn"),
                       tags=tuple(tags), counts={split: len(features)})
    shard_dir.mkdir(parents=True, exist_ok=True)
    spec = info.spec()
    halves = np.array_split(np.arange(len(features)), 2)
    for index, rows in enumerate(halves):
        with tf.io.TFRecordWriter(str(shard_dir / shard_name(split, index, len(halves)))) as writer:
            for i in rows:
                example = {"tid": f"TR{i:04d}", "artist_id": f"AR{i % 3}", "audio": features[i], "tags": labels[i]}
                writer.write(to_example(example, spec).SerializeToString())
    write_dataset_info(shard_dir, info)
    return info


def test_evaluate_on_tiny_shards_matches_sklearn(capsys, tiny_run_dir, tmp_path):  # noqa: F811
    from sklearn.metrics import average_precision_score, roc_auc_score

    from orpheus.audio.windows import cut_windows, normalise_windows
    rng = np.random.default_rng(3)
    n_tracks = 14
    dataset_tags = ("extra",) + tuple(reversed(TINY_TAGS))  # mapped by name, not position
    features = [rng.normal(size=(int(rng.integers(120, 700)), 96)).astype(np.float32) for _ in range(n_tracks)]
    labels = (rng.random((n_tracks, len(dataset_tags))) < 0.4).astype(np.int64)
    labels[0, :], labels[1, :] = 1, 0  # every tag has positives and negatives...
    labels[:, dataset_tags.index("jazz")] = 0  # ...but jazz, absent from the split
    shard_dir = tmp_path / "shards"
    write_shards(shard_dir, dataset_tags, labels, features)
    out = tmp_path / "report"
    status = predict_and_test.main(["test", "--run-dir", str(tiny_run_dir), "--tfrecords-dir", str(shard_dir),
                              "--out", str(out), "--quiet", "--batch-size", "5"])  # batches span tracks
    assert status == 0 and "ROC-AUC macro" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())

    tagger = TaggingEngine(tiny_run_dir)
    scores = np.stack([np.asarray(tagger.model(normalise_windows(cut_windows(f, 187), tagger.info))).mean(axis=0)
                       for f in features])
    truth = labels[:, [dataset_tags.index(t) for t in TINY_TAGS]]
    defined = [j for j, t in enumerate(TINY_TAGS) if t != "jazz"]
    assert metrics["absent_tags"] == ["jazz"] and metrics["n_tracks"] == n_tracks
    assert metrics["roc_auc_macro"] == pytest.approx(roc_auc_score(truth[:, defined], scores[:, defined],
                                                                   average="macro"), abs=1e-5)
    assert metrics["pr_auc_macro"] == pytest.approx(average_precision_score(truth[:, defined], scores[:, defined],
                                                                            average="macro"), abs=1e-5)
    assert metrics["roc_auc_micro"] == pytest.approx(roc_auc_score(truth.ravel(), scores.ravel()), abs=1e-5)
    with np.load(out / "predictions.npz") as npz:
        assert list(npz["tids"]) == [f"TR{i:04d}" for i in range(n_tracks)]
        np.testing.assert_allclose(npz["scores"], scores, atol=1e-5)
        np.testing.assert_array_equal(npz["labels"], truth)
    for name in ("roc_pr.png", "auc_per_tag.png", "threshold_per_tag.png", "tag_map.png", "per_tag.csv"):
        assert (out / name).stat().st_size > 100
    status = predict_and_test.main(["test", "--run-dir", str(tiny_run_dir), "--tfrecords-dir", str(shard_dir),
                              "--out", str(out), "--quiet"])
    assert status == 1 and "--overwrite" in capsys.readouterr().err


def test_model_tags_missing_from_dataset_is_clear_error(capsys, tiny_run_dir, tmp_path):  # noqa: F811
    rng = np.random.default_rng(4)
    tags = ("rock", "pop", "jazz")
    write_shards(tmp_path / "shards", tags, np.ones((2, 3), np.int64),
                 [rng.normal(size=(200, 96)).astype(np.float32) for _ in range(2)])
    status = predict_and_test.main(["test", "--run-dir", str(tiny_run_dir), "--tfrecords-dir", str(tmp_path / "shards"),
                              "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and "electronic" in err and "dataset.json" in err


def test_merged_tags_of_the_run_map_to_groups(capsys, tiny_run_dir, tmp_path):  # noqa: F811
    import shutil

    from orpheus.config import config_from_dict
    from orpheus.files import write_json_atomic
    run_dir = tmp_path / "merged_run"
    shutil.copytree(tiny_run_dir, run_dir)
    write_json_atomic(run_dir / "config.json",
                      config_from_dict({"data": {"merge_tags": [["rock", "hard rock"]]}}).to_json())
    rng = np.random.default_rng(5)
    dataset_tags = TINY_TAGS + ("hard rock",)
    labels = (rng.random((6, len(dataset_tags))) < 0.5).astype(np.int64)
    labels[:, 0] = [1, 0, 0, 0, 0, 0]
    labels[:, -1] = [0, 1, 0, 0, 0, 0]  # hard rock only: counts as rock
    write_shards(tmp_path / "shards", dataset_tags, labels,
                 [rng.normal(size=(300, 96)).astype(np.float32) for _ in range(6)])
    status = predict_and_test.main(["test", "--run-dir", str(run_dir), "--tfrecords-dir", str(tmp_path / "shards"),
                              "--out", str(tmp_path / "r"), "--quiet"])
    assert status == 0, capsys.readouterr().err
    with np.load(tmp_path / "r" / "predictions.npz") as npz:
        assert list(npz["labels"][:, 0]) == [1, 1, 0, 0, 0, 0]
        np.testing.assert_array_equal(npz["labels"][:, 1:], labels[:, 1:len(TINY_TAGS)])


def test_excluded_tracks_of_the_run_are_not_scored(capsys, tiny_run_dir, tmp_path):  # noqa: F811
    import shutil

    from orpheus.config import config_from_dict
    from orpheus.files import write_json_atomic
    run_dir = tmp_path / "excluding_run"
    shutil.copytree(tiny_run_dir, run_dir)
    write_json_atomic(run_dir / "config.json",
                      config_from_dict({"data": {"exclude_tids": ["TR0001", "TR0004"]}}).to_json())
    rng = np.random.default_rng(6)
    labels = (rng.random((6, len(TINY_TAGS))) < 0.5).astype(np.int64)
    labels[0], labels[2] = 1, 0
    write_shards(tmp_path / "shards", TINY_TAGS, labels, [rng.normal(size=(200, 96)).astype(np.float32)
                                                          for _ in range(6)])
    status = predict_and_test.main(["test", "--run-dir", str(run_dir), "--tfrecords-dir", str(tmp_path / "shards"),
                              "--out", str(tmp_path / "r"), "--quiet"])
    assert status == 0, capsys.readouterr().err
    with np.load(tmp_path / "r" / "predictions.npz") as npz:
        assert list(npz["tids"]) == ["TR0000", "TR0002", "TR0003", "TR0005"]
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["n_tracks"] == 4


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict_and_test.main(["predict", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "examples:" in out and "--record-length" in out
