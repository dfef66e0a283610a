"""Orpheus: music auto-tagging on the Million Song Dataset and on your own songs.

The core package holds what every stage shares: audio decoding and features (`audio`), the
TFRecord schema (`spec`), configuration (`config`), the input pipeline (`data_input`), the model
zoo (`models`), training, evaluation and tagging. It never imports the stages `msd` or `tfrecords`.

The Python API (`orpheus.tag`, `orpheus.Tagger`, see `orpheus.api`) is loaded on first use, so
`import orpheus` stays cheap: TensorFlow is imported only when a model is loaded.
"""

__version__ = "0.1.0"

_API = ("tag", "Tagger", "TagResult", "ModelIdentity")


def __getattr__(name: str):
    if name in _API:
        from orpheus import api
        return getattr(api, name)
    raise AttributeError(f"module 'orpheus' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
