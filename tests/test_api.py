"""orpheus.tag / orpheus.Tagger on generated music: order, errors, arrays, and the same numbers as predict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import orpheus
from orpheus.commands import predict_and_test
from orpheus.errors import ConfigError
from tests.fixtures_audio import render_clip, write_clip
from tests.fixtures_tagging import TINY_TAGS, needs_musicnn, tiny_run_dir  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("songs")
    return [write_clip(folder / "b_metal.mp3", ("metal", "male"), seed=1),
            write_clip(folder / "a_jazz.flac", ("jazz", "instrumental"), seed=2, duration_s=7.0),
            write_clip(folder / "c_ambient.ogg", ("ambient",), seed=3)]


@pytest.fixture(scope="module")
def tiny(tiny_run_dir):  # noqa: F811
    return orpheus.Tagger(run_dir=tiny_run_dir, embeddings=True)


def test_import_orpheus_imports_no_tensorflow():
    code = "import orpheus, sys; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; orpheus.Tagger"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    code = "import orpheus.api, orpheus.tagging.tagger, sys; assert 'tensorflow' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
    with pytest.raises(AttributeError, match="no_such_thing"):
        orpheus.no_such_thing  # noqa: B018


def test_results_in_input_order_with_bad_and_missing_files(tiny, songs, tmp_path):
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3" + b"\x00" * 300)
    paths = [songs[2], broken, songs[0], tmp_path / "missing.wav", songs[1]]
    results = tiny.tag(paths)
    assert [r.file for r in results] == [str(p) for p in paths]  # input order, not sorted
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert "broken.mp3" in results[1].error and "missing.wav" in results[3].error
    assert results[1].tags == {} and results[1].taggram is None
    good = results[0]
    probabilities = list(good.tags.values())
    assert sorted(good.tags) == sorted(TINY_TAGS) and probabilities == sorted(probabilities, reverse=True)
    assert good.taggram.shape == (2, 6) and good.embeddings.shape == (2, 16)  # 4 s: one window + the end-aligned one
    assert good.tag_names == TINY_TAGS
    np.testing.assert_allclose([good.tags[t] for t in TINY_TAGS], good.taggram.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(good.window_start_s, [0.0, (251 - 187) * 256 / 16000])
    # a folder expands to its files, sorted
    assert [r.file for r in tiny.tag(songs[0].parent)] == [str(p) for p in sorted(songs)]


def test_threshold_and_top_select_tags(tiny, songs):
    (full,) = tiny.tag(songs[0])
    (top2,) = tiny.tag([songs[0]], top=2)
    assert list(top2.tags) == list(full.tags)[:2]
    cut = (list(full.tags.values())[2] + list(full.tags.values())[3]) / 2
    (above,) = tiny.tag([songs[0]], threshold=cut)
    assert list(above.tags) == list(full.tags)[:3]


def test_tag_array_equals_tagging_the_file(tiny, tmp_path):
    stereo = render_clip(("pop", "female"), seed=5, duration_s=5.0, sample_rate=22050)
    path = tmp_path / "pop.wav"
    sf.write(str(path), stereo, 22050, subtype="FLOAT")  # float wav: the file holds exactly these samples
    from_array = tiny.tag_array(stereo, 22050, name="pop")
    (from_file,) = tiny.tag([path])
    assert from_array.file == "pop" and from_array.ok
    assert from_array.tags == pytest.approx(from_file.tags, abs=1e-5)
    np.testing.assert_allclose(from_array.taggram, from_file.taggram, atol=1e-5)


def test_module_level_tag_with_run_dir(tiny_run_dir, songs):  # noqa: F811
    results = orpheus.tag([songs[1]], run_dir=tiny_run_dir, top=3, hop_s=1.5, aggregate="max")
    assert len(results) == 1 and len(results[0].tags) == 3
    assert max(results[0].tags.values()) == pytest.approx(results[0].taggram.max(), abs=1e-6)
    with pytest.raises(ConfigError, match="not both"):
        orpheus.tag([songs[1]], model="MSD_musicnn", run_dir=tiny_run_dir)


def predict_json(capsys, *args) -> list[dict]:
    status = predict_and_test.main(["predict", "--quiet", "--format", "json", *map(str, args)])
    assert status == 0, capsys.readouterr().err
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_api_and_predict_json_give_the_same_numbers(capsys, tiny_run_dir, songs):  # noqa: F811
    records = predict_json(capsys, "--run-dir", tiny_run_dir, "--mp3", songs[0].parent, "--taggram",
                           songs[0].parent.parent / "api_taggram.png", "--overwrite")
    results = orpheus.tag(songs[0].parent, run_dir=tiny_run_dir)
    assert [r["file"] for r in records] == [r.file for r in results]
    for record, result in zip(records, results):
        assert list(record["tags"]) == list(result.tags)  # same order
        assert record["tags"] == pytest.approx(result.tags, abs=1e-7)
        np.testing.assert_allclose(record["taggram"]["probabilities"], result.taggram, atol=1e-6)


@needs_musicnn
def test_pretrained_model_by_name_matches_predict(capsys, songs):
    (result,) = orpheus.tag([songs[0]], model="MSD_musicnn", top=5)
    (record,) = predict_json(capsys, "--mp3", songs[0], "--top", "5")
    assert len(result.tags) == 5 and result.taggram.shape[1] == 50
    assert list(record["tags"]) == list(result.tags)
    assert record["tags"] == pytest.approx(result.tags, abs=1e-7)


@needs_musicnn
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Python block, as written, on generated song.mp3 / other.flac (needs the musicnn checkpoints)."""
    import ast
    import re
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    write_clip(tmp_path / "song.mp3", ("rock", "male"), seed=7, duration_s=6.0)
    write_clip(tmp_path / "other.flac", ("jazz",), seed=8, duration_s=4.0)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("song.mp3 [(") and lines[1].startswith("other.flac [(")
    # 6 s = 376 frames: 187-frame windows every 94 frames (1.504 s) at 0, 94, 188, and one end-aligned at 189
    assert lines[2] == "(4, 50) [0.    1.504 3.008] (4, 200)"
    assert len(ast.literal_eval(lines[3])) == 3


# ---------------------------------------------------------------- what notebooks hand over

def test_arrays_as_the_field_s_libraries_return_them(tiny):
    """Integer PCM is scaled by its type; channels-first (librosa) and channels-last (soundfile) agree."""
    stereo = render_clip(("rock", "male"), seed=9, duration_s=4.0, sample_rate=22050)   # float [n, 2] in [-1, 1]
    reference = tiny.tag_array(stereo, 22050)
    int16 = np.round(stereo * 32767).astype(np.int16)            # soundfile.read(dtype="int16"), scipy wavfile
    uint8 = np.round(stereo * 127 + 128).astype(np.uint8)        # 8-bit wav
    int32 = np.round(stereo.astype(np.float64) * (2 ** 31 - 1)).astype(np.int32)
    for samples, atol in ((int16, 1e-3), (int32, 1e-5), (uint8, 3e-2), (stereo.T, 1e-6),   # (2, n): librosa
                          (int16.T, 1e-3), (stereo.astype(np.float64), 1e-6)):
        result = tiny.tag_array(samples, 22050)
        assert result.ok and not result.warnings, samples.dtype
        np.testing.assert_allclose(result.taggram, reference.taggram, atol=atol, err_msg=str(samples.dtype))
    mono = tiny.tag_array(stereo.mean(axis=1), 22050)
    np.testing.assert_allclose(mono.taggram, reference.taggram, atol=1e-5)
    np.testing.assert_allclose(tiny.tag_array([list(stereo[:, 0])], 22050).taggram,    # a (1, n) list: mono
                               tiny.tag_array(stereo[:, 0], 22050).taggram, atol=1e-6)


@pytest.mark.parametrize("samples, sample_rate, expected", [
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.full(16000, np.nan, np.float32), 16000, "NaN or infinite"),
    (np.r_[np.zeros(8000), np.inf].astype(np.float32), 16000, "NaN or infinite"),
    (np.zeros(16000, np.float32), 0, "sample_rate"),
    (np.zeros(16000, np.float32), float("nan"), "sample_rate"),
    (np.zeros(16000, np.float32), 22050.5, "sample_rate"),
    (np.zeros((2, 3, 16000), np.float32), 16000, "3-D"),
    (np.float32(0.5), 16000, "0-D"),
    (np.zeros((4, 4), np.float32), 16000, "channels"),
    (np.array(["a", "b"]), 16000, "numbers"),
    (np.zeros(16000, np.complex64), 16000, "numbers"),
    (b"RIFF....WAVEfmt ", 16000, "bytes"),
])
def test_bad_arrays_are_one_clear_error(tiny, samples, sample_rate, expected):
    from orpheus.errors import OrpheusError
    with pytest.raises(OrpheusError, match=expected) as info:
        tiny.tag_array(samples, sample_rate, name="take 3")
    assert "take 3" in str(info.value) and "expected" in str(info.value)


def test_warnings_carry_what_predict_prints(tiny, tmp_path):
    quiet = 1e-4 * render_clip(("ambient",), seed=4, duration_s=4.0, sample_rate=16000)
    silent = tiny.tag_array(quiet, 16000, name="quiet")
    assert silent.ok and any("near-silent" in w for w in silent.warnings)
    short = tiny.tag_array(render_clip(("rock",), seed=4, duration_s=1.0, sample_rate=16000), 16000)
    assert short.ok and [w for w in short.warnings if "very short" in w]
    loud = tiny.tag_array(render_clip(("rock",), seed=4, duration_s=4.0, sample_rate=16000) * 32767, 16000)
    assert any("[-1, 1]" in w for w in loud.warnings)   # integer PCM cast to float, never scaled
    short_file = write_clip(tmp_path / "short.flac", ("jazz",), seed=2, duration_s=1.0)
    (from_file,) = tiny.tag([short_file])
    assert from_file.ok and any("very short" in w for w in from_file.warnings)


def test_a_bad_item_never_stops_the_batch(tiny, songs, tmp_path):
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    results = tiny.tag([songs[0], empty, b"/no/such.mp3", 42, songs[1]])
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert "no mp3/" in results[1].error and str(empty) in results[1].error
    assert "bytes" in results[2].error and "os.fsdecode" in results[2].error
    assert "42" in results[3].error and "expected" in results[3].error
    assert results[1].tags == {} and results[1].warnings == ()
    assert [r.file for r in results][::4] == [str(songs[0]), str(songs[1])]


@needs_musicnn
def test_readme_arrays_example_runs(capsys):
    """The README's block on what tag_array takes, as written (needs the musicnn checkpoints)."""
    import re
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"<!-- api-arrays-example -->\s*```python\n(.*?)```", text, re.S)
    exec(compile(block, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["True ()", "near-silent"]
    assert lines[2].startswith("take 3: holds NaN or infinite samples; expected samples as [n_samples] mono")
