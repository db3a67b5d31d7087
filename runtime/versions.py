"""Versions of mpx and the libraries an artifact was made with, from the installed packages'
metadata (importlib.metadata), so no layer imports another just to learn a version; and how mpx
was installed, for the command that adds an extra to it."""
from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

# The distribution's name, as pip knows it (pyproject.toml): `mpx` on the package index is an
# unrelated project, so every version lookup and install hint uses this one. `import mpx` and the
# `mpx` command keep mpx's own name.
DISTRIBUTION = "mpx-music"


def version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def versions(*distributions: str) -> dict[str, str]:
    """{"mpx": ..., "python": ..., and each installed distribution asked for}."""
    out = {"mpx": version(DISTRIBUTION) or "unknown", "python": platform.python_version()}
    for name in distributions:
        found = version(name)
        if found:
            out[name] = found
    return out


def install_source() -> str:
    """What pip calls mpx in a command that adds an extra to it: the folder it was installed from
    (`.` when that is the current one), else the distribution's name, which pip completes with
    the extra's packages without fetching another mpx (a wheel, the package index)."""
    origin = {}
    # every installed copy's record, not only the first one found: a build leaves an
    # mpx_music.egg-info (no direct_url.json) in the checkout, first on sys.path when run from it
    for found in metadata.distributions(name=DISTRIBUTION):
        try:
            text = found.read_text("direct_url.json")
            origin = json.loads(text) if text else {}
        except (ValueError, OSError):
            origin = {}
        if origin:
            break
    url = origin.get("url", "") if isinstance(origin, dict) else ""
    if "dir_info" in origin and url.startswith("file://"):
        folder = Path(unquote(urlparse(url).path))
        try:
            return "." if folder.resolve() == Path.cwd().resolve() else os.fspath(folder)
        except OSError:
            return os.fspath(folder)
    return DISTRIBUTION


def install_hint(extra: str) -> str:
    """The command that adds an extra (pyproject.toml) to this mpx: pip install '.[plot]'."""
    return f"pip install '{install_source()}[{extra}]'"
