"""Which files an export writes into its folder, checked before any work and without torch (so
`mpx export` refuses in a fraction of a second, not after loading torch).

An export set is whole: the artifacts in a folder come from one checkpoint. An artifact already
there that this export replaces needs force; one that it does not replace may stay when it was
made from the same checkpoint (`mpx export --format pt2` beside the .onnx and .pt of the same
weights), and otherwise belongs to an earlier set of other weights: refused, or with force
removed when the new set is in place, so no `music_producter.int8.onnx` of another model is
left beside the new ones.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from mpx.runtime import formats
from mpx.runtime.artifacts import ONNX_INT8
from mpx.runtime.atomic import ensure_writable
from mpx.runtime.errors import MpxError
from mpx.runtime.info import sha256

from .errors import ExportError
from .options import ExportOptions

# every file an export may write: each exported format's, and the int8 variant of the ONNX graph
ARTIFACT_NAMES = (*(formats.get(name).filename for name in formats.EXPORTED), ONNX_INT8)


@dataclasses.dataclass(frozen=True)
class Targets:
    write: list[Path]     # the artifacts this export writes
    stale: list[Path]     # artifacts of an earlier set (other weights) to remove once the new set is in


def plan(checkpoint: str | Path, out_dir: str | Path, options: ExportOptions) -> Targets:
    """The files of this export in out_dir; ExportError (one line) for what it must not do."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: not a directory")
    names = [formats.get(f).filename for f in options.formats] + ([ONNX_INT8] if options.quantize else [])
    write = [out_dir / n for n in names]
    existing = [t for t in write if t.exists()]
    if existing and not options.force:
        raise ExportError(f"{existing[0]}: exists; pass --force to replace it or choose another --out-dir")
    others = [out_dir / n for n in ARTIFACT_NAMES if n not in names and (out_dir / n).is_file()]
    stale = []
    if others:
        source = sha256(Path(checkpoint)) if Path(checkpoint).is_file() else None
        stale = [p for p in others if source is None or artifact_source(p) != source]
    if stale and not options.force:
        raise ExportError(f"{stale[0]}: an artifact of other weights (an earlier export) that this export "
                          "does not replace; pass --force to remove it with the new set, or choose another --out-dir")
    if out_dir.is_dir():
        ensure_writable(write[0])
    return Targets(write=write, stale=stale)


def artifact_source(path: Path) -> str | None:
    """The sha256 of the checkpoint an artifact was exported from (its spec's
    `artifact.source_sha256`), read as data by the format registry (never loaded or run); None
    when the file is no artifact mpx can read."""
    try:
        source = formats.of(path).read(path)["spec"].artifact.get("source_sha256")
    except MpxError:
        return None
    return source if isinstance(source, str) else None
