"""A newcomer's first hour (issue 22): the install, the Makefile, what the tests and the README's
commands leave in the checkout, and the help and messages of the command line."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mpx.runtime import versions
from mpx.runtime.versions import DISTRIBUTION, install_hint

from conftest import ROOT


def tracked_text_files() -> list[tuple[Path, str]]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    texts = []
    for name in filter(None, listed.stdout.split("\0")):
        path = ROOT / name
        if path.suffix in {".py", ".md", ".toml", ".cpp", ".h", ".mjs", ".js", ".html", ".txt", ""} and path.is_file():
            try:
                texts.append((path, path.read_text()))
            except UnicodeDecodeError:
                continue
    return texts


# -- the install --------------------------------------------------------------------------------
def test_the_distribution_name_is_not_the_unrelated_mpx_of_the_package_index() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION != "mpx"
    assert list(project["scripts"]) == ["mpx"]  # the command keeps its name
    assert all(DISTRIBUTION in extra for extra in project["optional-dependencies"]["dev"] if "[" in extra)
    assert versions.versions()["mpx"] == project["version"]  # found under the distribution's name


# a hint that names the bare distribution mpx, which would fetch the unrelated mpx 0.1
BAD_HINT = re.compile(r"""pip install\s+(-\S+\s+)*['"]?mpx(\[|['"\s]|$)""", re.MULTILINE)


def test_every_install_hint_names_a_path_or_this_distribution() -> None:
    bad = [f"{path.relative_to(ROOT)}: {match.group(0)!r}" for path, text in tracked_text_files()
           for match in BAD_HINT.finditer(text)]
    assert bad == []


class Installed:
    """importlib.metadata's view of an installed mpx with this direct_url.json (None: from an index)."""

    def __init__(self, origin: dict | None) -> None:
        self.origin = origin

    def read_text(self, name: str) -> str | None:
        return json.dumps(self.origin) if name == "direct_url.json" and self.origin else None


@pytest.mark.parametrize("origin, cwd, hint", [
    (None, "elsewhere", f"pip install '{DISTRIBUTION}[plot]'"),  # from the package index
    ({"url": "file:///wheels/mpx_music-0.1.0-py3-none-any.whl", "archive_info": {}}, "elsewhere",
     f"pip install '{DISTRIBUTION}[plot]'"),  # a wheel: pip completes the installed mpx-music
    ({"url": "file:///src/mpx", "dir_info": {"editable": True}}, "checkout", "pip install '.[plot]'"),
    ({"url": "file:///src/mpx", "dir_info": {}}, "elsewhere", "pip install '/src/mpx[plot]'"),
])
def test_the_install_hint_says_how_this_mpx_was_installed(origin: dict | None, cwd: str, hint: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions.metadata, "distribution", lambda name: Installed(origin))
    monkeypatch.setattr(versions.Path, "cwd", lambda: Path("/src/mpx" if cwd == "checkout" else "/tmp"))
    assert install_hint("plot") == hint


def test_the_missing_extra_message_carries_the_hint() -> None:
    from mpx.runtime.errors import missing_extra
    message = str(missing_extra("plotting", "matplotlib", extra="plot"))
    assert message == f"plotting needs matplotlib: {install_hint('plot')}"


# -- the Makefile and the checkout ----------------------------------------------------------------
def make_dry_run(target: str) -> list[str]:
    done = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def pip_installs(lines: list[str]) -> list[tuple[str, str]]:
    """(venv, what) of every `VENV/bin/python -m pip install ...` of mpx itself."""
    found = re.findall(r"^(\S+)/bin/python -m pip install -q (.+)$", "\n".join(lines), re.MULTILINE)
    return [(venv, what) for venv, what in found if what.split()[-1] in (".", "'.[dev]'")]


def test_make_run_and_make_test_keep_one_install_mode_per_venv() -> None:
    run, test = make_dry_run("run"), make_dry_run("test")
    copies = {venv for venv, what in pip_installs(run + test) if not what.startswith("-e ")}
    editable = {venv for venv, what in pip_installs(run + test) if what.startswith("-e ")}
    assert copies == {".venv-runtime"} and editable == {".venv"}  # `make run` never replaces the editable mpx
    assert not any("torch" in line for line in run)  # the runtime venv stays torch-free
    assert any(line.startswith(".venv-runtime/bin/mpx run") for line in run)
    assert any(".venv-runtime/bin/python -m pytest" in line for line in test)  # the torch-free tier
    assert sum("MPX_CHECK_CHECKOUT=1" in line for line in test) == 2  # both tiers leave the checkout clean


def test_litter_for_the_checkout_guard() -> None:
    target = os.environ.get("MPX_TEST_LITTER")
    if not target:
        pytest.skip("a helper: test_make_test_fails_when_tests_change_the_checkout runs it")
    Path(target).write_text("left by a test\n")


def test_make_test_fails_when_tests_change_the_checkout() -> None:
    litter = ROOT / f"litter-{os.getpid()}.txt"
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               f"{Path(__file__).name}::test_litter_for_the_checkout_guard"],
                              cwd=Path(__file__).parent, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "MPX_CHECK_CHECKOUT": "1", "MPX_TEST_LITTER": str(litter)})
    finally:
        litter.unlink(missing_ok=True)
    assert done.returncode == 1, done.stdout
    assert f"?? {litter.name}" in done.stdout and "the tests changed the checkout" in done.stdout


def test_web_test_draws_its_screenshot_outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import test_web
    monkeypatch.delenv("MPX_WEB_SCREENSHOT", raising=False)
    assert tmp_path in test_web.screenshot_path(tmp_path).parents
    assert "MPX_WEB_SCREENSHOT=$(CURDIR)/examples/web/screenshot.png" in (ROOT / "Makefile").read_text()
