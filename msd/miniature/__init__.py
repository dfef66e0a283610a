"""Generators of miniature datasets in the real file formats, and the demo that runs every stage on them.

Used by the tests, the benchmarks and the demo; never by the stages themselves.
"""

from pathlib import Path

from orpheus.errors import OutputExistsError
from orpheus.files import mark
from orpheus.ownership import FolderKind, claim

# A generated corpus's folder; written before the ownership marker, it holds its generator's record
CORPUS = FolderKind("miniature dataset", legacy=lambda folder: any(
    (folder / name).exists() for name in ("truth.csv", "synthetic_manifest.json", "render.json")))


def start_corpus(out_dir: Path, finished: Path | None = None, overwrite: bool = False) -> None:
    """Create and mark `out_dir` for a generated corpus, or check that it is one (any generator's):
    a folder Orpheus did not write (real audio, say) is refused, with `--overwrite` too. `finished`,
    the file a generator writes last, marks a complete corpus: it is replaced only with `overwrite`
    (an interrupted one is resumed)."""
    claim(out_dir, CORPUS, resume=True, flag="OUT_DIR")
    if finished is not None and finished.exists() and not overwrite:
        raise OutputExistsError(f"{finished}: a generated corpus is already complete in {out_dir}; pass --overwrite "
                                "to replace it or choose another OUT_DIR")
    out_dir.mkdir(parents=True, exist_ok=True)
    mark(out_dir, CORPUS)
