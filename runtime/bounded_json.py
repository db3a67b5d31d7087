"""JSON read from model files, with limits on its size and nesting checked before it is parsed.

Python's json parser recurses once per level: 100,000 nested `[` end in RecursionError, and
a document a few hundred levels deep parses but breaks whatever walks it later (`mpx info`'s
indented print). Every JSON that mpx reads from a model file (a spec, an archive's own
records, a safetensors header) goes through `loads`, which refuses such text in one line.
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

MAX_DEPTH = 32          # an mpx spec nests 5 levels; torch's archive records about 12
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_STEP = np.zeros(256, np.int64)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1


class JsonLimit(ValueError):
    """Text past a limit: too large or nested too deep (a ValueError, as json's own errors)."""


def depth(text: bytes) -> int:
    """The deepest nesting of [ and { outside strings (without parsing)."""
    steps = _STEP[np.frombuffer(_STRINGS.sub(b'""', text), np.uint8)]
    return int(np.cumsum(steps).max(initial=0))


def loads(text: str | bytes, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads after checking the limits; JsonLimit (or json's ValueError) otherwise."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if len(data) > max_bytes:
        raise JsonLimit(f"is {len(data):,} bytes, more than the {max_bytes:,} an mpx file holds")
    found = depth(data)
    if found > max_depth:
        raise JsonLimit(f"nests {found:,} levels deep, more than the {max_depth} an mpx file uses")
    try:
        return json.loads(data)
    except RecursionError:  # cannot happen below MAX_DEPTH; kept as the last guard
        raise JsonLimit("nests too deep to read") from None
