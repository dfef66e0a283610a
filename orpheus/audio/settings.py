"""The one record of how audio becomes a model input: `FeatureSettings`.

The same record is the `features` of a shard folder's `dataset.json` (`orpheus.formats.tfrecord.DatasetInfo`), of
a run directory's `run.json` (`orpheus.formats.rundir.RunInfo`), of what preprocessing's and tagging's worker
processes receive, and of what `orpheus.export` writes beside an exported model. It is serialised in
one way (`to_json` / `from_json`), and the values derived from it (bins per frame, frame rate, hop,
context) are computed here and nowhere else. The lists of feature formats and of normalisations are
kept here too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping


FORMATS = ("waveform", "log-mel-spectrogram", "mfcc")
SPECTRAL_FORMATS = ("log-mel-spectrogram", "mfcc")
# How windows are standardised before the model (`orpheus.audio.windows.normalise_windows`): "per_example"
# (each window to zero mean, unit variance), "dataset" (fixed per-bin statistics of the training split)
# or "none" (pretrained models, which normalise inside).
NORMALISATIONS = ("per_example", "dataset", "none")


@dataclass(frozen=True)
class FeatureSettings:
    """The arguments of `orpheus.audio.features.features`, as one picklable, serialisable value.

    format:      one of `FORMATS`.
    sample_rate: Hz the audio is resampled to.
    n_mels / n_fft / hop_length / preset: spectrogram settings (None for waveform); `preset` names an
                 `orpheus.audio.features.PRESETS` entry (its log compression and default STFT).
    n_mfcc:      MFCC coefficients (None unless format is "mfcc").
    """
    format: str
    sample_rate: int
    n_mels: int | None = None
    n_fft: int | None = None
    hop_length: int | None = None
    preset: str | None = None
    n_mfcc: int | None = None

    @property
    def n_bins(self) -> int | None:
        """Feature bins per frame: mels, MFCCs, or None for waveform."""
        return {"waveform": None, "mfcc": self.n_mfcc}.get(self.format, self.n_mels)

    @property
    def frames_per_second(self) -> float:
        """Rate of the time axis: samples/s for waveform, frames/s for spectral formats."""
        return self.sample_rate / self.hop

    @property
    def hop(self) -> int:
        """Samples per time step of the features (1 for waveform, hop_length for spectral formats)."""
        return 1 if self.format == "waveform" else int(self.hop_length)

    @property
    def context(self) -> int:
        """Samples on each side of a frame that its value depends on (n_fft for spectral formats)."""
        return 0 if self.format == "waveform" else int(self.n_fft or 2048)

    def frames(self, seconds: float) -> int:
        """Length of `seconds` of audio on the time axis (samples or frames), rounded."""
        return int(round(seconds * self.frames_per_second))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "FeatureSettings":
        """The record of `to_json`'s output; unknown keys raise ValueError."""
        unknown = sorted(set(raw) - FIELDS)
        if unknown:
            raise ValueError(f"unknown feature keys {unknown}")
        return cls(**raw)


FIELDS = frozenset(f.name for f in dataclasses.fields(FeatureSettings))


def nest_features(raw: dict[str, Any]) -> dict[str, Any]:
    """A `dataset.json` / `run.json` object with its feature settings under "features".

    Files written before the record was shared kept the settings as top-level keys; they are read
    the same way, so older shard folders and run directories keep working.
    """
    raw = dict(raw)
    if "features" in raw:
        raw["features"] = FeatureSettings.from_json(raw["features"])
    else:
        raw["features"] = FeatureSettings(**{key: raw.pop(key) for key in list(raw) if key in FIELDS})
    return raw
