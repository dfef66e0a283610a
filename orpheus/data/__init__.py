"""Data files the code reads at run time, shipped inside the package (so an installed Orpheus needs
no checkout): the pretrained models' tag lists (`msd_musicnn_tags.txt`, `mtt_musicnn_tags.txt`, one tag
a line, in output order) and the demo's training config (`demo.json`). Example configs for users stay
in the repository's `configs/`; the cleaning stage's tag lists ship in `msd/txt/`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_file(name: str) -> Path:
    """The path of the packaged data file `name` (Orpheus installs as plain files, never zipped)."""
    return Path(str(resources.files(__name__).joinpath(name)))
