"""How the cleaning commands report what they dropped: `<output stem>.dropped.csv` and a printed summary."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from orpheus.ownership import csv_kind

DROP_REPORT = csv_kind("drop report", (), last="reason")   # wrangle's and silence's .dropped.csv


def dropped_path(output: str | Path) -> Path:
    """`wrangle.csv` -> `wrangle.dropped.csv`: the dropped rows and their reasons, beside the output."""
    output = Path(output)
    return output.with_name(f"{output.stem}.dropped.csv")


def format_drop_summary(stage: str, n_kept: int, counts: Iterable[tuple[str, int]], output: str | Path) -> str:
    """The printed summary of one command: tracks in and kept, then each drop reason with its count."""
    counts = [(name, int(n)) for name, n in counts]
    lines = [f"{stage}: {n_kept + sum(n for _, n in counts)} tracks in, {n_kept} kept -> {output}"]
    lines += [f"  dropped {n:>8d}  {name}" for name, n in counts]
    lines.append(f"  dropped rows and reasons -> {dropped_path(output)}")
    return "\n".join(lines)
