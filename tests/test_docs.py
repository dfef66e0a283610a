"""The README and docs/ pages: their runnable shell blocks work as written, and their links resolve.

The README's tour builds a miniature corpus in `$W`; every runnable block of `docs/` then runs on that same
corpus, page by page, so the pages share one setup and stay cheap.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNABLE = re.compile(r"<!-- runnable -->\s*```bash\n(.*?)```", re.S)
DOC_PAGES = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOC_PAGES]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# words a newcomer cannot use: module forms being removed, the project's own test folders, its history
FORBIDDEN = {
    "a `python -m` module form (use `orpheus NAME`)": re.compile(r"python -m (?:msd|orpheus|tfrecords)\.\w"),
    "the project's test folder": re.compile(r"\.\./shared"),
    "a development stop": re.compile(r"\bstop \d+"),
    "an issue number": re.compile(r"\bissue \d+"),
}


def runnable_blocks(text: str) -> list[str]:
    return RUNNABLE.findall(text)


def run_blocks(blocks: list[str], workdir: Path, page: str) -> subprocess.CompletedProcess:
    script = "set -euo pipefail\n" + "\n".join(blocks)
    env = {**os.environ, "W": str(workdir), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO)}
    result = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, f"{page}: exit status {result.returncode}\n{result.stdout[-1500:]}\n{result.stderr[-3000:]}"
    return result


def test_readme_has_runnable_blocks_and_two_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(runnable_blocks(text)) >= 2
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert re.findall(r"^make (\w+)", first_block, re.M) == ["demo", "test"]


def test_readme_fits_on_a_screen():
    assert (REPO / "README.md").stat().st_size <= 15_500


def test_readme_and_docs_runnable_blocks_run(tmp_path):
    """The README's tour, then every docs page's runnable blocks on the tour's corpus, in page order."""
    tour = tmp_path / "tour"
    result = run_blocks(runnable_blocks((REPO / "README.md").read_text(encoding="utf-8")), tour, "README.md")
    for output in ("ultimate.csv", "clean_lastfm.db", "shards/dataset.json", "runs/tour/model.keras",
                   "report/metrics.json"):
        assert (tour / output).is_file(), output
    assert "mp3" in result.stdout  # predict printed a table naming the tagged files
    ran = []
    for page in DOC_PAGES:
        blocks = runnable_blocks(page.read_text(encoding="utf-8"))
        if blocks:
            run_blocks(blocks, tour, f"docs/{page.name}")
            ran.append(page.name)
    assert len(ran) >= 5, ran


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces -> hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def test_github_anchor_matches_githubs_rules():
    assert github_anchor("Outputs, `--overwrite` and exit statuses") == "outputs---overwrite-and-exit-statuses"
    assert github_anchor("Runners: `--runner pool` (default) or `--runner beam`") == \
        "runners---runner-pool-default-or---runner-beam"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    """Every relative link names a file that exists and, with #anchor, a heading of that file."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_use_only_words_a_newcomer_can_use(page):
    text = page.read_text(encoding="utf-8")
    found = [f"{what}: {m.group(0)!r}" for what, rx in FORBIDDEN.items() for m in [rx.search(text)] if m]
    assert not found, f"{page.name}: {found}"


def test_docs_index_links_every_page():
    index = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    missing = [p.name for p in DOC_PAGES if p.name != "index.md" and f"({p.name}" not in index]
    assert not missing, missing
