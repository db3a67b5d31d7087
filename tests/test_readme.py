"""Every shell and Python block of the README works as pasted, from a fresh clone's point of
view: the repository's tracked files copied into a temporary folder (no venv, no build, no runs,
nothing from outside the repository), each block run there in order (bash -e, or python), and
afterwards `git status` shows nothing: every file the commands wrote is one .gitignore covers.

A block that cannot run here says so on the line before it:
    <!-- test_readme: skip: needs the ASAP data set, which the repository does not ship -->
and this test prints each skipped block with its reason. The `mpx` command and `python` are
the ones of this test's environment (what `make test` installed)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT

SKIP = re.compile(r"<!--\s*test_readme:\s*skip:\s*(.+?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Block:
    line: int          # where the block starts in the file (1-based, the fence)
    language: str
    text: str
    skip: str | None   # the reason given before it, if any


def blocks(markdown: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with the skip marker before each."""
    found, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence or lines[i].strip() == "```":
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = SKIP.search(before)
        found.append(Block(start + 1, fence.group(1), "\n".join(lines[start + 1:i]), marker.group(1) if marker else None))
        i += 1
    return found


RUNNERS = {"sh": ["bash", "-e", "-o", "pipefail", "-c"], "bash": ["bash", "-e", "-o", "pipefail", "-c"],
           "python": [sys.executable, "-c"]}


def runnable_blocks(path: Path) -> list[Block]:
    """The README's blocks a reader pastes: shell commands and Python."""
    return [b for b in blocks(path.read_text()) if b.language in RUNNERS]


def fresh_copy(where: Path) -> Path:
    """The tracked files of the working tree (with uncommitted edits), as one commit of a new
    repository: what a clone holds, and a `git status` to compare against."""
    copy = where / "mpx"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    git = ["git", "-c", "user.name=readme", "-c", "user.email=readme@test", "-c", "commit.gpgsign=false"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fresh clone"]):
        subprocess.run([*git, *command], cwd=copy, check=True, capture_output=True)
    if (ROOT / "examples" / "node_modules").is_dir():  # what `make web-deps` would install
        (copy / "examples" / "node_modules").symlink_to(ROOT / "examples" / "node_modules")
    return copy


def test_blocks_and_markers_are_read() -> None:
    text = "x\n<!-- test_readme: skip: needs data -->\n```sh\nmpx a\nmpx b\n```\n\n```python\nprint()\n```\n```sh\nls\n```\n"
    found = blocks(text)
    assert [(b.line, b.language, b.text, b.skip) for b in found] == [
        (3, "sh", "mpx a\nmpx b", "needs data"), (8, "python", "print()", None), (11, "sh", "ls", None)]


def test_every_skipped_block_says_why() -> None:
    readme = runnable_blocks(ROOT / "README.md")
    assert readme and all(b.skip is None or len(b.skip) > 10 for b in readme)
    assert sum(b.skip is None for b in readme) >= 3  # most of the README runs


@pytest.mark.slow
def test_readme_blocks_work_as_pasted(tmp_path: Path) -> None:
    copy = fresh_copy(tmp_path)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path / "home"),
           "MPX_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "80"}
    env.pop("MPX_CHECK_CHECKOUT", None)
    ran, skipped = 0, []
    for block in runnable_blocks(copy / "README.md"):
        if block.skip:
            skipped.append(f"README.md:{block.line}: {block.skip}")
            continue
        done = subprocess.run([*RUNNERS[block.language], block.text], cwd=copy, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (f"README.md:{block.line} failed (exit {done.returncode}):\n{block.text}\n"
                                      f"--- stderr\n{done.stderr[-3000:]}\n--- stdout\n{done.stdout[-1500:]}")
        ran += 1
    print(f"\nREADME: {ran} blocks ran; skipped:\n" + "\n".join(skipped))
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=copy,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", f"the README's commands left files .gitignore does not cover:\n{status}"
