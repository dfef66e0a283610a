"""Microphone recording through the real PortAudio + ALSA stack, fed by an ALSA `file` capture device.

PortAudio reads the ALSA configuration when it initialises, so each recording runs in a subprocess
whose HOME holds an `.asoundrc` making the default PCM a `file` plugin that reads raw S16_LE mono
PCM of a known music clip (and plays into `null`).
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orpheus.audio.decode import load_audio
from orpheus.errors import AudioDeviceError
from orpheus.tagging.tagger import TaggingEngine
from tests.fixtures_tagging import TINY_TAGS, tiny_run_dir  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
RATE = 16000


def portaudio_loadable() -> bool:
    name = ctypes.util.find_library("portaudio")
    if name is None:
        return False
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not portaudio_loadable(),
                                reason="PortAudio cannot be loaded; apt-get install libportaudio2")


def alsa_home(tmp_path: Path, raw_path: Path | None) -> Path:
    """A HOME whose .asoundrc makes the default device read `raw_path` (or, with None, no device at all)."""
    home = tmp_path / "home"
    home.mkdir()
    if raw_path is None:
        config = 'pcm.!default { type hw card 99 }\nctl.!default { type hw card 99 }\n'
    else:
        config = (f'pcm.!default {{\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n'
                  f'  infile "{raw_path}"\n  format "raw"\n}}\n')
    (home / ".asoundrc").write_text(config)
    return home


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "orpheus/test_model.py", "predict", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


def test_recorded_clip_tags_like_the_file(tmp_path, tiny_run_dir, music_dir):  # noqa: F811
    samples, _ = load_audio(music_dir / "fof_armygeddon_mix.ogg", RATE)
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    raw = tmp_path / "clip.raw"
    pcm.tofile(raw)
    clip_wav = tmp_path / "clip.wav"  # the same PCM as a file, for the reference tags
    sf.write(str(clip_wav), pcm[:6 * RATE], RATE, subtype="PCM_16")
    saved = tmp_path / "recorded.wav"
    done = run_cli(alsa_home(tmp_path, raw), "--run-dir", str(tiny_run_dir), "--record", "--record-length", "6",
                   "--countdown", "0", "--save-recording", str(saved), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert "recording" in done.stderr  # progress shown on stderr
    record = json.loads(done.stdout)
    recorded, rate = sf.read(str(saved), dtype="int16")
    assert rate == RATE and recorded.shape == (6 * RATE,)
    np.testing.assert_array_equal(recorded, pcm[:6 * RATE])  # bit-exact through PortAudio
    expected = next(TaggingEngine(tiny_run_dir).tag_files([clip_wav], quiet=True))
    assert record["file"] == str(saved)
    assert record["tags"] == pytest.approx(dict(zip(TINY_TAGS, expected.scores.tolist())),
                                           abs=1e-4)


def test_no_input_device_is_a_clear_error(tmp_path, tiny_run_dir):  # noqa: F811
    done = run_cli(alsa_home(tmp_path, None), "--run-dir", str(tiny_run_dir), "--record", "--record-length", "1")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("python orpheus/test_model.py predict: error:") and "python -m sounddevice" in last
    assert "libportaudio2" in last or "microphone" in last


def test_missing_portaudio_names_the_package(monkeypatch):
    # sounddevice raises OSError when its ctypes lookup of the library fails: reproduce that for real
    # by hiding the library from ctypes.util.find_library and reloading the module.
    import importlib

    import orpheus.tagging.recording as recording
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(AudioDeviceError, match="libportaudio2"):
        importlib.reload(recording).import_sounddevice()
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
