"""Orpheus: music auto-tagging on the Million Song Dataset and on your own songs.

The core package holds what every stage shares: audio decoding and features (`audio`), the
TFRecord schema (`spec`), configuration (`config`), the input pipeline (`data_input`), the model
zoo (`models`), training, evaluation and tagging. It never imports the stages `msd` or `tfrecords`.
"""

__version__ = "0.1.0"
