"""A tiny but real tagging model saved as a run directory, shared by the tagging/CLI/recording tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from orpheus.errors import MissingDependencyError
from orpheus.models.musicnn_checkpoint import INSTALL_COMMAND
from orpheus.models.pretrained import PRETRAINED, locate_checkpoint

TINY_TAGS = ("rock", "pop", "jazz", "electronic", "ambient", "metal")
TINY_WINDOW_S = 2.992  # 187 frames at 16 kHz / hop 256, as musicnn


def _musicnn_installed() -> bool:
    """Whether the pretrained musicnn checkpoints (the musicnn package's files) are installed."""
    try:
        for name in PRETRAINED:
            locate_checkpoint(name)
    except MissingDependencyError:
        return False
    return True


needs_musicnn = pytest.mark.skipif(not _musicnn_installed(), reason=f"musicnn checkpoints absent: {INSTALL_COMMAND}")


def build_tiny_run_dir(run_dir: Path, *, normalise: str = "per_example") -> Path:
    """Write run.json + model.keras of a small Conv1D tagger over musicnn-preset log-mels (free time axis)."""
    import keras
    from keras import layers

    from orpheus.audio.settings import FeatureSettings
    from orpheus.formats.rundir import MODEL_FILE, RunInfo, write_run_info
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 96), name="audio")
    x = layers.Conv1D(12, 5, activation="relu", name="conv")(inputs)
    x = layers.GlobalMaxPooling1D(name="pool")(x)
    x = layers.Dense(16, activation="relu", name="embedding")(x)
    outputs = layers.Dense(len(TINY_TAGS), activation="sigmoid", name="tags")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / MODEL_FILE)
    write_run_info(run_dir, RunInfo(tags=TINY_TAGS, features=FeatureSettings(
                                    "log-mel-spectrogram", 16000, n_mels=96, n_fft=512, hop_length=256, preset="musicnn"),
                                    window_s=TINY_WINDOW_S, normalise=normalise, model_name="tiny", source="test"))
    return run_dir


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory) -> Path:
    return build_tiny_run_dir(tmp_path_factory.mktemp("runs") / "tiny")


def link_clips(clips: Path, folder: Path, names: list[str]) -> list[Path]:
    """Symlink shared clips into `folder` (never copies audio); returns the links."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        link = folder / name
        link.symlink_to(clips / name)
        out.append(link)
    return out
