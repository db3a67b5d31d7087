"""The bundled model's files, and `load`: any model file -> a Generator."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .backends import open_backend
from .errors import ArtifactError
from .generate import Generator

CHECKPOINT = "model.safetensors"
TORCHSCRIPT = "music_producter.pt"
ONNX = "music_producter.onnx"
ONNX_INT8 = "music_producter.int8.onnx"
PT2 = "music_producter.pt2"             # torch.export archive (not bundled: `mpx export --format pt2`)
AOTI = "music_producter.aoti.pt2"       # AOTInductor package, compiled per CPU (not bundled)
SEED = "seed.mid"
BUNDLED = {"onnx": ONNX, "torchscript": TORCHSCRIPT, "eager": CHECKPOINT}  # per backend


def bundled_dir() -> Path:
    """The installed `mpx/artifacts` folder (the repository's artifacts/ in an editable install)."""
    return Path(str(resources.files("mpx.artifacts")))


def bundled(backend: str = "onnx") -> Path:
    """The bundled model file a backend runs by default."""
    path = bundled_dir() / BUNDLED[backend]
    if not path.is_file():
        raise ArtifactError(f"{path}: the bundled model file is missing; "
                            "create it with `mpx export` or pass --model")
    return path


def load(path: str | os.PathLike[str] | None = None, backend: str | None = None,
         threads: int | None = None) -> Generator:
    """A Generator for any model file: .onnx, .pt, or a .safetensors checkpoint (eager, needs
    the training extra). The backend follows the file's suffix unless `backend` names one;
    with no path, the bundled model of that backend (ONNX by default)."""
    if path is None:
        path = bundled(backend or "onnx")
    return Generator(open_backend(path, backend, threads))
