"""Tagging audio with a run directory's model: the tagger (`tagger`), its input side (`inputs`: listing, decoding
workers, streaming, input warnings) and output side (`outputs`), the model backends and their cache (`backends`,
`fast_arithmetic`, `quantize`, `calibration`), runs over a whole library (`library`), the microphone
(`recording`), and writing tags into users' files (`file_tags`)."""
