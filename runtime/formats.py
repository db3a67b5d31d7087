"""Artifact formats, in one registry: every place that opens, inspects, exports, bundles or
names a model file reads it here.

    fmt = formats.of("x.aoti.pt2")          # by suffix, the longest that ends the name
    fmt = formats.get("pt2")                # by name (--backend); OptionsError for an unknown one
    backend = formats.open_backend(path)    # Backend (runtime/backends.py), through checked_open
    facts = fmt.read(path)                  # what `mpx info` shows, read as data (no code runs)

A format says where its spec is kept (the keys are the contract's), whether it needs torch,
whether it is a program (loading or calling it runs code it carries: a TorchScript archive, an
AOTInductor package) or data, which writer of `mpx.export.writers` writes it, and the file name
mpx gives it. The eager backend (a checkpoint run by the training code) is found through the
`mpx.backends` entry point, so the runtime never imports mpx.train.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from . import contract
from .backends import (Backend, CompiledBackend, OnnxBackend, TorchScriptBackend, check_sizes,
                       lstm_sizes)
from .checkpoints import read_header
from .checks import integer
from .errors import ArtifactError, OptionsError, missing_extra
from .pt2_archive import read_aoti, read_pt2
from .spec import ModelSpec
from .torchscript_archive import read_archive

ENTRY_POINTS = "mpx.backends"   # pyproject.toml: [project.entry-points."mpx.backends"]
MAX_THREADS = 256

Opener = Callable[[Path, "int | None"], Backend]
Reader = Callable[[Path], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Format:
    name: str               # the backend that runs it (--backend), and the format (--format)
    kind: str               # what `mpx info` and messages call such a file
    title: str              # its name in prose
    suffixes: tuple[str, ...]
    filename: str           # the name `mpx export` (or training, for a checkpoint) gives it
    spec_in: str            # where the file keeps its spec
    needs_torch: bool
    program: bool           # loading or calling it runs code the file carries: only from trusted sources
    writer: str | None      # the function of mpx.export.writers that writes it; None: not exported
    bundled: bool           # shipped in mpx/artifacts
    opener: Opener          # the backend, opened without the shared checks: use open_backend
    reader: Reader          # {"spec": ModelSpec, ...}: what `mpx info` shows, never running the file

    def open(self, path: str | os.PathLike[str], threads: int | None = None) -> Backend:
        return checked_open(self, Path(path), threads)

    def read(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        path = Path(path)
        _require_file(path)
        return self.reader(path)


# -- opening -----------------------------------------------------------------------------------
def open_backend(path: str | os.PathLike[str], backend: str | None = None,
                 threads: int | None = None) -> Backend:
    """Open any model file; the format follows its suffix unless `backend` names one."""
    fmt = get(backend) if backend is not None else of(path)
    return checked_open(fmt, Path(path), threads)


def checked_open(fmt: Format, path: Path, threads: int | None) -> Backend:
    """Every model file of every format is opened here, so what must hold for all of them is
    checked in one place before the format's own loader runs (today: the file exists, the
    thread count; each loader checks its spec against its graph)."""
    check_threads(threads)
    _require_file(path)
    return fmt.opener(path, threads)


def check_threads(threads: int | None) -> None:
    if threads is not None:
        integer("threads", threads, 1, MAX_THREADS)


def _require_file(path: Path) -> None:
    _not_a_folder(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file")


def _not_a_folder(path: str | os.PathLike[str]) -> None:
    if Path(path).is_dir():
        raise ArtifactError(f"{path}: is a directory; give a model file in it "
                            f"({', '.join(s for f in FORMATS.values() for s in f.suffixes)})")


def _open_onnx(path: Path, threads: int | None) -> Backend:
    return OnnxBackend(path) if threads is None else OnnxBackend(path, threads=threads)


def _open_torchscript(path: Path, threads: int | None) -> Backend:
    return TorchScriptBackend(path, threads=threads)


def _open_checkpoint(path: Path, threads: int | None) -> Backend:
    """The eager backend, a plugin of the training code (found by entry point, never imported)."""
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINTS) if ep.name == "eager"]
    if not found:
        raise missing_extra("the eager backend", "the training code")
    try:
        opener = found[0].load()
    except ImportError:
        raise missing_extra("the eager backend", "torch and safetensors", instead="or use an .onnx model") from None
    return opener(path, threads=threads)


def _open_pt2(path: Path, threads: int | None) -> Backend:
    return CompiledBackend(path, "pt2", threads=threads)


def _open_aoti(path: Path, threads: int | None) -> Backend:
    return CompiledBackend(path, "aoti", threads=threads)


# -- reading as data (mpx info) ----------------------------------------------------------------
def _read_onnx(path: Path) -> dict[str, Any]:
    """ONNX is data: onnxruntime reads the graph and runs nothing until it is called."""
    backend = OnnxBackend(path)
    return {"spec": backend.spec,
            "inputs": [{"name": i.name, "shape": i.shape, "dtype": i.type} for i in backend.session.get_inputs()],
            "outputs": [{"name": o.name, "shape": o.shape, "dtype": o.type} for o in backend.session.get_outputs()]}


def _read_torchscript(path: Path) -> dict[str, Any]:
    """Read as the zip archive it is: torch.jit.load would run its code."""
    archive = read_archive(path)
    if archive.spec_json is None:
        raise ArtifactError(f"{path}: TorchScript archive has no {contract.TORCHSCRIPT_SPEC_FILE}; "
                            "export it with `mpx export`")
    spec = ModelSpec.from_json(archive.spec_json, source=str(path))
    check_sizes(spec, lstm_sizes(archive.shapes), path, "module")
    missing = [m for m in contract.TORCHSCRIPT_METHODS if m not in archive.methods]
    if missing:
        raise ArtifactError(f"{path}: TorchScript module lacks {', '.join(missing)}; not an mpx artifact")
    return {"spec": spec, "methods": list(archive.methods), "runs_code_at_load": archive.runs_code_at_load}


def _read_checkpoint(path: Path) -> dict[str, Any]:
    header = read_header(path)
    check_sizes(header.spec, lstm_sizes(header.weights), path, "weights")
    facts: dict[str, Any] = {"spec": header.spec, "weights": header.weights}
    if header.progress:
        facts["training_state"] = {k: header.progress.get(k) for k in ("epoch", "step", "best_val", "seconds")}
    return facts


def _read_pt2(path: Path) -> dict[str, Any]:
    archive = read_pt2(path)
    spec = _spec(archive.spec_json, path)
    weights = {k: v for k, v in (archive.shapes or {}).items()}
    check_sizes(spec, lstm_sizes(weights), path, "weights")
    return {"spec": spec, "weights": weights, "time_axis": archive.time_axis}


def _read_aoti(path: Path) -> dict[str, Any]:
    archive = read_aoti(path)
    return {"spec": _spec(archive.spec_json, path), "time_axis": archive.time_axis,
            "compiled_for": archive.metadata}


def _spec(text: str | None, path: Path) -> ModelSpec:
    if not text:
        raise ArtifactError(f"{path}: the archive carries no mpx spec; export it with `mpx export`")
    return ModelSpec.from_json(text, source=str(path))


# -- the registry --------------------------------------------------------------------------------
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", "onnx", "ONNX graph", (".onnx",), "music_producter.onnx",
           f'ONNX metadata_props["{contract.SPEC_KEY}"]', needs_torch=False, program=False,
           writer="onnx", bundled=True, opener=_open_onnx, reader=_read_onnx),
    Format("torchscript", "torchscript", "TorchScript archive", (".pt",), "music_producter.pt",
           f"archive extra file {contract.TORCHSCRIPT_SPEC_FILE}", needs_torch=True, program=True,
           writer="torchscript", bundled=True, opener=_open_torchscript, reader=_read_torchscript),
    Format("eager", "checkpoint", "checkpoint", (".safetensors",), "model.safetensors",
           f'safetensors metadata["{contract.SPEC_KEY}"]', needs_torch=True, program=False,
           writer=None, bundled=True, opener=_open_checkpoint, reader=_read_checkpoint),
    Format("pt2", "pt2", "torch.export archive", (".pt2",), "music_producter.pt2",
           f"archive extra file {contract.PT2_SPEC_FILE}", needs_torch=True, program=False,
           writer="pt2", bundled=False, opener=_open_pt2, reader=_read_pt2),
    Format("aoti", "aoti", "AOTInductor package", (".aoti.pt2",), "music_producter.aoti.pt2",
           f'AOTInductor package metadata["{contract.SPEC_KEY}"]', needs_torch=True, program=True,
           writer="aoti", bundled=False, opener=_open_aoti, reader=_read_aoti),
)}
NAMES = tuple(FORMATS)
EXPORTED = tuple(f.name for f in FORMATS.values() if f.writer)        # what `mpx export` writes
SHIPPED = tuple(f.name for f in FORMATS.values() if f.writer and f.bundled)  # export's default set


def get(name: str) -> Format:
    """The format of a backend name; OptionsError naming the choices otherwise."""
    if name not in FORMATS:
        raise OptionsError(f"backend must be one of {', '.join(NAMES)}, got {name!r}", "backend")
    return FORMATS[name]


def of(path: str | os.PathLike[str]) -> Format:
    """The format of a file by its suffix (the longest that ends its name: an AOTInductor
    package is a .pt2 archive too); ArtifactError for an unknown suffix."""
    _not_a_folder(path)
    name = Path(path).name.lower()
    matches = [(len(s), f) for f in FORMATS.values() for s in f.suffixes if name.endswith(s)]
    if not matches:
        known = ", ".join(s for f in FORMATS.values() for s in f.suffixes)
        raise ArtifactError(f"{path}: unknown model file type {Path(path).suffix.lower()!r}; expected one of {known}")
    return max(matches, key=lambda m: m[0])[1]


def programs() -> tuple[Format, ...]:
    """The formats whose files run code when loaded or called."""
    return tuple(f for f in FORMATS.values() if f.program)


def program_warning() -> str:
    """The warning help texts give: which files are programs."""
    kinds = " or ".join(f"{f.suffixes[0]} ({f.title})" for f in programs())
    return (f"A {kinds} file is a program: loading or running it runs its code. Use such files only "
            "from sources you trust; prefer .onnx (data, not code) for files from others. "
            "(`mpx info` reads them without running them.)")
