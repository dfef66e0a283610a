"""`orpheus models`: list the registered models (`orpheus.models.registry`) with their parameter counts.

Each model is built for a stated input (a window of `--input-seconds` at `--sample-rate`: waveform
samples, or log-mel frames of `--n-mels` bands at `--hop-length`, centred frames as the preprocessing
writes them) and `--n-tags` outputs, with its reference widths (the registry's `reference_config`, else
the defaults of `orpheus.config.ModelConfig`), unless `--n-filters` / `--n-dense` override them.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Sequence

from orpheus.cli import add_common_args, make_parser, run_main
from orpheus.config import ModelConfig
from orpheus.errors import ConfigError


EPILOG = """examples:
  orpheus models
  orpheus models --input-seconds 29.12 --sample-rate 12000 --hop-length 256 --n-tags 50
  orpheus models --n-filters 32 --n-dense 1024
"""


@dataclasses.dataclass(frozen=True)
class ModelRow:
    """One line of the listing; `parameters` is None when the model cannot take the stated input."""
    name: str
    formats: tuple[str, ...]
    input_shape: tuple[int, ...]
    config: ModelConfig
    parameters: int | None
    description: str
    problem: str = ""


def log_mel_frames(n_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT (librosa's default) over `n_samples` samples."""
    return 1 + n_samples // hop_length


def run(*, input_seconds: float, sample_rate: int, hop_length: int, n_mels: int, n_tags: int,
        n_filters: int | None = None, n_dense: int | None = None) -> list[ModelRow]:
    """Build every registered model for the stated input and count its parameters.

    Args:
        input_seconds: window length in seconds.
        sample_rate: Hz of the audio.
        hop_length: samples between log-mel frames.
        n_mels: mel bands of spectrogram input.
        n_tags: output tags.
        n_filters, n_dense: widths for every model; None keeps each model's reference widths.

    Returns:
        One row per registered model, in registry order.
    """
    import keras

    from orpheus.models.registry import MODELS, WAVEFORM_FORMATS, build_model, count_parameters

    if input_seconds <= 0 or sample_rate < 1 or hop_length < 1 or n_mels < 1 or n_tags < 1:
        raise ConfigError("--input-seconds, --sample-rate, --hop-length, --n-mels and --n-tags must be positive")
    n_samples = int(round(input_seconds * sample_rate))
    rows = []
    for name, entry in MODELS.items():
        if entry.formats == WAVEFORM_FORMATS:
            shape: tuple[int, ...] = (n_samples,)
        else:
            shape = (log_mel_frames(n_samples, hop_length), n_mels)
        config = model_config(name, entry.reference_config, n_filters=n_filters, n_dense=n_dense)
        try:
            model = build_model(config, shape, n_tags)
        except ConfigError as err:
            rows.append(ModelRow(name, entry.formats, shape, config, None, entry.description, str(err)))
            continue
        rows.append(ModelRow(name, entry.formats, shape, config, count_parameters(model), entry.description))
        keras.backend.clear_session()
    return rows


def model_config(name: str, reference: ModelConfig | None, *, n_filters: int | None,
                 n_dense: int | None) -> ModelConfig:
    """The config to list model `name` with: its reference widths, overridden where given."""
    config = dataclasses.replace(reference or ModelConfig(), name=name)
    overrides = {key: value for key, value in (("n_filters", n_filters), ("n_dense", n_dense))
                 if value is not None}
    return dataclasses.replace(config, **overrides)


def format_rows(rows: Sequence[ModelRow]) -> str:
    """A plain-text table: name, parameters, input shape, formats, then the description."""
    lines = [f"{'model':<15}{'parameters':>12}  {'filters/dense':<15}{'input shape':<13}{'formats':<29}"
             "description"]
    for row in rows:
        count = f"{row.parameters:,}" if row.parameters is not None else "n/a"
        widths = f"{row.config.n_filters}/{row.config.n_dense}"
        lines.append(f"{row.name:<15}{count:>12}  {widths:<15}{str(row.input_shape):<13}"
                     f"{', '.join(row.formats):<29}{row.description}")
        if row.problem:
            lines.append(f"{'':<15}  cannot take this input: {row.problem}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("orpheus models",
                         "List the registered models with their parameter counts for a stated input.", EPILOG)
    parser.add_argument("--input-seconds", type=float, default=15.0, help="window length in seconds")
    parser.add_argument("--sample-rate", type=int, default=16000, help="audio sample rate in Hz")
    parser.add_argument("--hop-length", type=int, default=512, help="samples between log-mel frames")
    parser.add_argument("--n-mels", type=int, default=96, help="mel bands of spectrogram input")
    parser.add_argument("--n-tags", type=int, default=50, help="number of output tags")
    parser.add_argument("--n-filters", type=int, default=None,
                        help="model.n_filters for every model (default: each model's reference widths)")
    parser.add_argument("--n-dense", type=int, default=None,
                        help="model.n_dense for every model (default: each model's reference widths)")
    add_common_args(parser)
    return parser


def _list_models(args: argparse.Namespace) -> int:
    rows = run(input_seconds=args.input_seconds, sample_rate=args.sample_rate, hop_length=args.hop_length,
               n_mels=args.n_mels, n_tags=args.n_tags, n_filters=args.n_filters, n_dense=args.n_dense)
    print(f"input: {args.input_seconds:g} s at {args.sample_rate} Hz; log-mel: {args.n_mels} mels, hop "
          f"{args.hop_length}; {args.n_tags} tags")
    print(format_rows(rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, _list_models)

