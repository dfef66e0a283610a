"""The package as users install it: a wheel built from this checkout ships every file the code reads at
run time, and installed elsewhere (without the checkout on the path) its `orpheus` command works."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orpheus", "msd", "tfrecords", "beetsplug")  # beetsplug: beets' namespace, our orpheus.py in it


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel` of a copy of the checkout (building in place would leave build/ in the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (built,) = (tmp / "dist").glob("orpheus_tagger-*.whl")
    return built


def test_wheel_ships_every_module_and_data_file_and_the_command(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    in_checkout = {p.relative_to(ROOT).as_posix() for package in PACKAGES for p in (ROOT / package).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert in_checkout - names == set()                      # modules, tag lists, the demo config, msd/txt
    assert {"orpheus/data/demo.json", "orpheus/data/msd_musicnn_tags.txt", "orpheus/data/mtt_musicnn_tags.txt",
            "msd/txt/genres.txt", "msd/converters/mtt.py", "msd/miniature/demo.py", "beetsplug/orpheus.py",
            "orpheus/data/genre_mood_tags.json"} <= names
    assert not any("__pycache__" in n or n.startswith("beetsplug/__init__") for n in names)
    assert "orpheus = orpheus.cli:main" in entry_points


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    return target


def run_installed(installed: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel")}
    env["PYTHONPATH"] = str(installed)          # not the checkout: only the installed copy is importable
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_installed_wheel_tags_and_helps_from_an_unrelated_folder(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run_installed(installed, elsewhere, "-c", "import orpheus, msd, tfrecords; "
                          "print(orpheus.__file__, msd.__file__, tfrecords.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(Path(f).is_relative_to(installed) for f in where.stdout.split()), where.stdout
    script = installed / "bin" / "orpheus"                   # the console script pip wrote
    assert script.is_file()

    front = run_installed(installed, elsewhere, str(script), "--help")
    assert front.returncode == 0 and "predict" in front.stdout and "demo" in front.stdout, front.stderr
    demo_help = run_installed(installed, elsewhere, str(script), "demo", "--help")
    assert demo_help.returncode == 0 and demo_help.stdout.startswith("usage: orpheus demo"), demo_help.stderr

    if importlib.util.find_spec("musicnn") is None:   # checkpoints: files read, code never imported
        pytest.skip("musicnn is not installed: pip install --no-deps musicnn==0.1.0")
    t = np.arange(16000 * 6) / 16000
    sf.write(elsewhere / "tone.mp3", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000, format="MP3")
    tagged = run_installed(installed, elsewhere, str(script), "predict", "--mp3", "tone.mp3", "--top", "3",
                           "--quiet")
    assert tagged.returncode == 0, tagged.stderr
    assert tagged.stdout.splitlines()[0] == "tone.mp3" and len(tagged.stdout.strip().splitlines()) == 4
