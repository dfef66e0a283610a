"""Shared fixtures. Tests run the real code on tiny data in the real formats, with seeded RNGs."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# librosa's numba functions cache their machine code beside librosa; two test workers compiling the same one at
# once left an index naming the other's code, and every later run of librosa.onset segfaulted. One cache per
# test process (and the processes it starts) keeps them apart.
if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="orpheus-tests-numba-")
    atexit.register(shutil.rmtree, os.environ["NUMBA_CACHE_DIR"], ignore_errors=True)

import pytest

SHARED_AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "audio"


@pytest.fixture(autouse=True)
def _logging_as_it_was():
    """A command's `main` configures the process's logging (`orpheus.cli.setup_logging`: root level and handler),
    as it may in its own process; in the test process that would reach every later test on the worker, so each
    test starts and ends with the logging configuration it found."""
    import logging
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session", autouse=True)
def _private_model_cache(tmp_path_factory) -> None:
    """Converted pretrained models go to a folder of this test session, not the user's cache."""
    if "ORPHEUS_CACHE" not in os.environ:
        os.environ["ORPHEUS_CACHE"] = str(tmp_path_factory.mktemp("orpheus_cache"))


@pytest.fixture(scope="session")
def shared_audio_dir() -> Path:
    """The folder of real music clips beside the checkout, or skip when it is absent."""
    clips = SHARED_AUDIO / "clips"
    if not clips.is_dir():
        pytest.skip("../shared/audio is not present on this machine")
    return clips


@pytest.fixture(scope="session")
def generated_audio_dir(tmp_path_factory) -> Path:
    """Generated 10 s music clips under the names of the real clips the tests use (tests/fixtures_audio.py)."""
    from tests.fixtures_audio import write_generated_clips
    return write_generated_clips(tmp_path_factory.mktemp("generated_audio"))


@pytest.fixture(scope="session", params=["generated", "real"])
def music_dir(request) -> Path:
    """A folder of 10 s music clips: generated ones (always), then the real ones (skipped when absent)."""
    name = "generated_audio_dir" if request.param == "generated" else "shared_audio_dir"
    return request.getfixturevalue(name)
