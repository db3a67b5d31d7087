"""torch.export (`.pt2`) and AOTInductor (`.aoti.pt2`) archives read as data: the spec and what
the archive says about itself, straight from the zip file, without torch and without loading
the program (`torch.export.load` may unpickle; an AOTInductor package's shared library runs
its constructors when it is loaded).

A torch.export archive keeps the spec in its extra files (`<archive>/extra/mpx_spec.json`) and
its weights' shapes in `<archive>/data/weights/model_weights_config.json`; an AOTInductor
package keeps the spec in its metadata (`<package>/data/aotinductor/model/*wrapper_metadata.json`),
beside the platform and instruction set it was compiled for.
"""
from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

from .contract import PT2_SPEC_FILE, SPEC_KEY, TIME_AXIS_KEY
from .errors import ArtifactError

MAX_MEMBER = 64 << 20  # a JSON member larger than this is no mpx artifact's


@dataclasses.dataclass(frozen=True)
class CompiledArchive:
    spec_json: str | None                   # None when the archive carries no mpx spec
    time_axis: str                          # "dynamic", or "1": the export fixed T to one note
    shapes: dict[str, list[int]] | None     # the weights' shapes (pt2); None where not readable (aoti)
    metadata: dict[str, str]                # the package's own entries (aoti: platform, CPU ISA)


def read_pt2(path: str | Path) -> CompiledArchive:
    return _read(Path(path), "torch.export archive", _pt2)


def read_aoti(path: str | Path) -> CompiledArchive:
    return _read(Path(path), "AOTInductor package", _aoti)


def _read(path: Path, what: str, reader: Any) -> CompiledArchive:
    try:
        with zipfile.ZipFile(path) as archive:
            return reader(archive, path)
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile raises BadZipFile, NotImplementedError,
        # OSError, EOFError, ValueError... on damaged bytes; json raises ValueError
        raise ArtifactError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})"[:300]) from None


def _member(archive: zipfile.ZipFile, suffix: str) -> str | None:
    """The text of the one member whose name ends with `suffix`, None when there is none."""
    names = [n for n in archive.namelist() if n.endswith(suffix)]
    if not names:
        return None
    if archive.getinfo(names[0]).file_size > MAX_MEMBER:
        raise ArtifactError(f"{archive.filename}: {names[0]} is too large for an mpx artifact")
    return archive.read(names[0]).decode("utf-8", "replace")


def _pt2(archive: zipfile.ZipFile, path: Path) -> CompiledArchive:
    if _member(archive, "/models/model.json") is None:
        raise ArtifactError(f"{path}: not a torch.export archive (no models/model.json)")
    weights = _member(archive, "/data/weights/model_weights_config.json")
    shapes = None
    if weights is not None:
        config = json.loads(weights).get("config", {})
        shapes = {name: [int(d["as_int"]) for d in entry["tensor_meta"]["sizes"]] for name, entry in config.items()}
    return CompiledArchive(_member(archive, f"/extra/{PT2_SPEC_FILE}"),
                           (_member(archive, f"/extra/{TIME_AXIS_KEY}") or "dynamic").strip(), shapes, {})


def _aoti(archive: zipfile.ZipFile, path: Path) -> CompiledArchive:
    text = _member(archive, "wrapper_metadata.json")
    if text is None:
        raise ArtifactError(f"{path}: not an AOTInductor package (no aotinductor model metadata)")
    metadata = json.loads(text)
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{path}: AOTInductor metadata is damaged")
    own = {k: str(v) for k, v in metadata.items() if k not in (SPEC_KEY, TIME_AXIS_KEY)}
    return CompiledArchive(metadata.get(SPEC_KEY), str(metadata.get(TIME_AXIS_KEY, "dynamic")), None, own)
