"""The model zoo: one module per family (`musicnn`: musicnn and its VGG baseline, `pons`, `choi`, `dabral`) holding
its builders and its layers' names, shared blocks and layers (`blocks`, `layers`), the registry that names them
(`registry`), and the pretrained musicnn checkpoints (`musicnn_checkpoint`, `pretrained`).

This package's `__init__` imports nothing, so finding a pretrained model (`orpheus.models.pretrained`) loads no
TensorFlow; the builders import Keras.
"""
