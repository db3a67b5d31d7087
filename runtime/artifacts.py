"""The bundled model's files, and `load`: any model file -> a Generator."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from . import formats
from .errors import ArtifactError, OptionsError
from .generate import Generator

ONNX_INT8 = "music_producter.int8.onnx"  # `mpx export --quantize int8` beside the fp32 graph
SEED = "seed.mid"


def bundled_dir() -> Path:
    """The installed `mpx/artifacts` folder (the repository's artifacts/ in an editable install)."""
    return Path(str(resources.files("mpx.artifacts")))


def bundled(backend: str = "onnx") -> Path:
    """The bundled model file a backend runs by default."""
    fmt = formats.get(backend)
    if not fmt.bundled:
        raise OptionsError(f"mpx bundles no {fmt.kind} model: pass --model FILE (make one with "
                           f"`mpx export --format {fmt.name}`)")
    path = bundled_dir() / fmt.filename
    if not path.is_file():
        raise ArtifactError(f"{path}: the bundled model file is missing; "
                            "create it with `mpx export` or pass --model")
    return path


def load(path: str | os.PathLike[str] | None = None, backend: str | None = None,
         threads: int | None = None) -> Generator:
    """A Generator for any model file (runtime/formats.py: .onnx, .pt, .pt2, .aoti.pt2, or a
    .safetensors checkpoint). The backend follows the file's suffix unless `backend` names one;
    with no path, the bundled model of that backend (ONNX by default)."""
    if path is None:
        path = bundled(backend or "onnx")
    return Generator(formats.open_backend(path, backend, threads))
