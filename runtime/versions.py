"""Versions of mpx and the libraries an artifact was made with, from the installed packages'
metadata (importlib.metadata), so no layer imports another just to learn a version."""
from __future__ import annotations

import platform
from importlib import metadata


def version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def versions(*distributions: str) -> dict[str, str]:
    """{"mpx": ..., "python": ..., and each installed distribution asked for}."""
    out = {"mpx": version("mpx") or "unknown", "python": platform.python_version()}
    for name in distributions:
        found = version(name)
        if found:
            out[name] = found
    return out
