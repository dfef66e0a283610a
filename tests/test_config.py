import json

import pytest

from orpheus.config import Config, config_from_dict, load_config
from orpheus.errors import ConfigError


def test_defaults_and_overrides():
    config = config_from_dict({"train": {"batch_size": 8, "learning_rate": 1}, "data": {"with_tags": ["rock"]}})
    assert config.train.batch_size == 8
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert config.data.with_tags == ("rock",)
    assert config.model == Config().model


@pytest.mark.parametrize("raw, message", [
    ({"train": {"batch_sise": 8}}, "unknown key train.batch_sise"),
    ({"train": {"batch_size": "8"}}, "train.batch_size must be int"),
    ({"train": {"loop": "eager"}}, "train.loop"),
    ({"data": {"merge_tags": [["a", 1]]}}, "data.merge_tags[0][1] must be str"),
    ({"optim": {}}, "unknown section 'optim'"),
    ({"model": {"dropout": 1.5}}, "model.dropout"),
    ({"train": {"batch_norm_momentum": 1.0}}, "train.batch_norm_momentum"),
    ({"train": {"decay_epochs": 0}}, "train.decay_epochs"),
    ({"train": {"early_stopping_patience": -1}}, "train.early_stopping_patience"),
    ({"train": {"precision": "fp8"}}, "train.precision must be one of"),
    ({"train": {"mixed_precision": "yes"}}, "train.mixed_precision must be bool"),
    ({"train": {"mixed_precision": True, "precision": "bfloat16"}}, "contradicts train.precision 'bfloat16'"),
    ({"train": {"mixed_precision": False, "precision": "float16"}}, "contradicts train.precision 'float16'"),
])
def test_errors_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(raw)


def test_load_config_names_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        load_config(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"model": {"name": "musicnn"}}))
    assert load_config(good).model.name == "musicnn"


def test_round_trip_through_json():
    config = config_from_dict({"data": {"merge_tags": [["hip hop", "rap"]]}, "train": {"schedule": "cyclic"}})
    assert config_from_dict(json.loads(json.dumps(config.to_json()))) == config


@pytest.mark.parametrize("mixed, precision", [(True, "float16"), (False, "float32")])
def test_mixed_precision_is_read_as_precision_with_a_warning(tmp_path, caplog, mixed, precision):
    """Configs written before train.precision keep working: the old key maps to the new one."""
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"train": {"mixed_precision": mixed, "batch_size": 8}}))
    with caplog.at_level("WARNING", logger="orpheus.config"):
        config = load_config(path)
    assert config.train.precision == precision and config.train.batch_size == 8
    assert f'train.mixed_precision is deprecated: write "precision": "{precision}"' in caplog.text
    assert "mixed_precision" not in config.to_json()["train"]
    assert config_from_dict({"train": {"mixed_precision": False, "precision": "auto"}}).train.precision == "auto"


def test_batch_norm_momentum_is_optional():
    assert Config().train.batch_norm_momentum is None
    assert config_from_dict({"train": {"batch_norm_momentum": 0.9}}).train.batch_norm_momentum == 0.9


@pytest.mark.parametrize("key, text", [("data.window_s", "Infinity"), ("data.window_s", "-Infinity"),
                                       ("train.learning_rate", "NaN"), ("model.dropout", "NaN"),
                                       ("train.batch_norm_momentum", "NaN"), ("train.decay_epochs", "Infinity")])
def test_non_finite_numbers_are_rejected_naming_the_key(tmp_path, key, text):
    """JSON parsers accept Infinity and NaN; a config must not (window_s Infinity crashed training)."""
    section, name = key.split(".")
    path = tmp_path / "config.json"
    path.write_text(f'{{"{section}": {{"{name}": {text}}}}}')
    with pytest.raises(ConfigError, match=rf"config.json: {key} must be a finite number"):
        load_config(path)
    with pytest.raises(ConfigError, match=rf"{key} must be a finite number"):
        Config().replace(**{section: {name: float(text.lower().replace("infinity", "inf"))}})
