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
