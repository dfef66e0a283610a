"""The README's runnable shell blocks work as written (on the miniature corpus they use)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNABLE = re.compile(r"<!-- runnable -->\s*```bash\n(.*?)```", re.S)


def runnable_blocks(text: str) -> list[str]:
    return RUNNABLE.findall(text)


def test_readme_has_runnable_blocks_and_two_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(runnable_blocks(text)) >= 2
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert re.findall(r"^make (\w+)", first_block, re.M) == ["demo", "test"]


def test_readme_runnable_blocks_run(tmp_path):
    script = "set -euo pipefail\n" + "\n".join(runnable_blocks((REPO / "README.md").read_text(encoding="utf-8")))
    env = {**os.environ, "W": str(tmp_path / "tour"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO)}
    result = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    tour = tmp_path / "tour"
    for output in ("ultimate.csv", "clean_lastfm.db", "shards/dataset.json", "runs/tour/model.keras",
                   "report/metrics.json"):
        assert (tour / output).is_file(), output
    assert "mp3" in result.stdout  # predict printed a table naming the tagged files
