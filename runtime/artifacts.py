"""Where the bundled model lives, and `load`: any artifact path -> a Generator."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .backends import backend_for, open_backend
from .errors import ArtifactError
from .generate import Generator

CHECKPOINT = "model.safetensors"
TORCHSCRIPT = "music_producter.pt"
ONNX = "music_producter.onnx"
ONNX_INT8 = "music_producter.int8.onnx"
DEFAULT_FILE = {"onnx": ONNX, "torchscript": TORCHSCRIPT, "eager": CHECKPOINT}


def bundled_dir() -> Path:
    """The installed `mpx/artifacts` folder (the repository's artifacts/ in an editable install)."""
    return Path(str(resources.files("mpx.artifacts")))


def bundled(backend: str = "onnx") -> Path:
    """The bundled model file a backend runs by default."""
    path = bundled_dir() / DEFAULT_FILE[backend]
    if not path.is_file():
        raise ArtifactError(f"{path}: the bundled model file is missing; "
                            "create it with `mpx export` or pass --model")
    return path


def load(path: str | os.PathLike[str] | None = None, backend: str | None = None,
         threads: int | None = None) -> Generator:
    """A Generator for an ONNX (.onnx) or TorchScript (.pt) artifact; the bundled ONNX by default.

    The backend follows the file's suffix unless `backend` names one. For a checkpoint (the
    eager backend) use mpx.train.eager.load, which needs the training code and torch.
    """
    if path is None:
        path = bundled(backend or "onnx")
    return Generator(open_backend(path, backend, threads))


__all__ = ["bundled", "bundled_dir", "load", "backend_for"]
