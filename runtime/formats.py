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

Every open goes through `checked_open`, which runs the format's checker before its loader: the
file read as data, without torch and without running anything in it (the spec's schema, with
limits on its size and nesting; the spec against the sizes of the graph or weights; the
checksum recorded at export, runtime/integrity.py; for the torch archives, nothing that would
unpickle, evaluate or load code beyond what mpx exports, runtime/pt2_archive.py). `mpx info`
shows the same facts.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from . import checkpoints, contract, integrity
from .backends import (Backend, CompiledBackend, OnnxBackend, TorchScriptBackend, check_sizes,
                       lstm_sizes)
from .checks import integer
from .errors import ArtifactError, OptionsError, missing_extra
from .pt2_archive import read_aoti, read_pt2
from .spec import ModelSpec
from .torchscript_archive import read_archive

log = logging.getLogger(__name__)

ENTRY_POINTS = "mpx.backends"   # pyproject.toml: [project.entry-points."mpx.backends"]
MAX_THREADS = 256
MAX_ONNX = 4 << 30              # bytes: an ONNX file larger than this is no mpx model's

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
    runs: str               # the code a program carries ("" for data)
    writer: str | None      # the function of mpx.export.writers that writes it; None: not exported
    bundled: bool           # shipped in mpx/artifacts
    opener: Opener          # the backend, opened without the shared checks: use open_backend
    checker: Reader         # {"spec": ModelSpec, "integrity": status, ...}: the checks on open, as data
    reader: Reader | None = None  # more of what `mpx info` shows (None: the checker's facts)

    def open(self, path: str | os.PathLike[str], threads: int | None = None) -> Backend:
        return checked_open(self, Path(path), threads)

    def check(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The checks every open runs first, on the file read as data (no code in it runs)."""
        path = Path(path)
        _require_file(path)
        return self.checker(path)

    def read(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """What `mpx info` shows: the checks' facts and more, read as data."""
        path = Path(path)
        _require_file(path)
        return self.reader(path) if self.reader else self.checker(path)


# -- opening -----------------------------------------------------------------------------------
def open_backend(path: str | os.PathLike[str], backend: str | None = None,
                 threads: int | None = None) -> Backend:
    """Open any model file; the format follows its suffix unless `backend` names one."""
    fmt = get(backend) if backend is not None else of(path)
    return checked_open(fmt, Path(path), threads)


def checked_open(fmt: Format, path: Path, threads: int | None) -> Backend:
    """Every model file of every format is opened here, so what must hold for all of them is
    checked in one place before the format's own loader runs: the thread count, then the file
    read as data by the format's checker (spec, sizes, checksum, nothing that runs code beyond
    the format's own); the loader's spec must then be the one checked."""
    check_threads(threads)
    facts = fmt.check(path)
    if facts["integrity"] == integrity.NOT_RECORDED:
        log.warning("%s: carries no checksum (written before mpx recorded one): damage to it cannot "
                    "be detected; export the model again", path)
    backend = fmt.opener(path, threads)
    if backend.spec != facts["spec"]:
        raise ArtifactError(f"{path}: the spec {fmt.title} loads differs from the spec its file "
                            "holds; the file is damaged or forged")
    return backend


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


# -- the checks on open, as data (and what `mpx info` shows) ------------------------------------
def _check_onnx(path: Path) -> dict[str, Any]:
    """The spec and the checksum from the protobuf bytes (no onnx, no onnxruntime); the graph's
    names and sizes are checked by the backend, which onnxruntime opens without running it."""
    data = integrity.read_file(path, MAX_ONNX)
    text, content, _ = integrity.onnx_parts(data, str(path))
    if text is None:
        raise ArtifactError(f"{path}: ONNX model has no mpx spec in its metadata; export it with `mpx export`")
    spec = ModelSpec.from_json(text, source=str(path))
    return {"spec": spec, "integrity": integrity.verify(integrity.spec_dict(text, str(path)), content, path)}


def _read_onnx(path: Path) -> dict[str, Any]:
    """ONNX is data: onnxruntime reads the graph (its names and sizes checked against the spec)
    and runs nothing until it is called."""
    facts = _check_onnx(path)
    session = OnnxBackend(path).session
    return {**facts,
            "inputs": [{"name": i.name, "shape": i.shape, "dtype": i.type} for i in session.get_inputs()],
            "outputs": [{"name": o.name, "shape": o.shape, "dtype": o.type} for o in session.get_outputs()]}


def _check_torchscript(path: Path) -> dict[str, Any]:
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
    return {"spec": spec, "integrity": integrity.check_archive(path, archive.spec_json),
            "methods": list(archive.methods), "runs_code_at_load": archive.runs_code_at_load}


def _check_checkpoint(path: Path) -> dict[str, Any]:
    data = checkpoints.read_whole(path)
    header = checkpoints.parse_header(data, path)
    check_sizes(header.spec, lstm_sizes(header.weights), path, "weights")
    status = checkpoints.checksum(data, header, path)
    facts: dict[str, Any] = {"spec": header.spec, "integrity": status, "weights": header.weights}
    if header.progress:
        facts["training_state"] = {k: header.progress.get(k) for k in ("epoch", "step", "best_val", "seconds")}
    return facts


def _check_pt2(path: Path) -> dict[str, Any]:
    archive = read_pt2(path)  # refuses what would unpickle or evaluate code (runtime/pt2_archive.py)
    spec = _spec(archive.spec_json, path)
    weights = dict(archive.shapes or {})
    check_sizes(spec, lstm_sizes(weights), path, "weights")
    return {"spec": spec, "integrity": integrity.check_archive(path, archive.spec_json),
            "weights": weights, "time_axis": archive.time_axis}


def _check_aoti(path: Path) -> dict[str, Any]:
    archive = read_aoti(path)  # one compiled library, a whole ELF file (runtime/pt2_archive.py)
    spec = _spec(archive.spec_json, path)
    check_sizes(spec, lstm_sizes(archive.shapes or {}), path, "compiled weights")
    return {"spec": spec, "integrity": integrity.check_archive(path, archive.spec_json),
            "time_axis": archive.time_axis, "compiled_for": archive.metadata}


def _spec(text: str | None, path: Path) -> ModelSpec:
    if not text:
        raise ArtifactError(f"{path}: the archive carries no mpx spec; export it with `mpx export`")
    return ModelSpec.from_json(text, source=str(path))


# -- the registry --------------------------------------------------------------------------------
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", "onnx", "ONNX graph", (".onnx",), "music_producter.onnx",
           f'ONNX metadata_props["{contract.SPEC_KEY}"]', needs_torch=False, program=False, runs="",
           writer="onnx", bundled=True, opener=_open_onnx, checker=_check_onnx, reader=_read_onnx),
    Format("torchscript", "torchscript", "TorchScript archive", (".pt",), "music_producter.pt",
           f"archive extra file {contract.TORCHSCRIPT_SPEC_FILE}", needs_torch=True, program=True,
           runs="TorchScript code", writer="torchscript", bundled=True, opener=_open_torchscript,
           checker=_check_torchscript),
    Format("eager", "checkpoint", "checkpoint", (".safetensors",), "model.safetensors",
           f'safetensors metadata["{contract.SPEC_KEY}"]', needs_torch=True, program=False, runs="",
           writer=None, bundled=True, opener=_open_checkpoint, checker=_check_checkpoint),
    Format("pt2", "pt2", "torch.export archive", (".pt2",), "music_producter.pt2",
           f"archive extra file {contract.PT2_SPEC_FILE}", needs_torch=True, program=False, runs="",
           writer="pt2", bundled=False, opener=_open_pt2, checker=_check_pt2),
    Format("aoti", "aoti", "AOTInductor package", (".aoti.pt2",), "music_producter.aoti.pt2",
           f'AOTInductor package metadata["{contract.SPEC_KEY}"]', needs_torch=True, program=True,
           runs="native code: a compiled shared library", writer="aoti", bundled=False, opener=_open_aoti,
           checker=_check_aoti),
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
    kinds = " or ".join(f"{f.suffixes[0]} ({f.title}: {f.runs})" for f in programs())
    return (f"A {kinds} file is a program: loading or running it runs its code. Use such files only "
            "from sources you trust; prefer .onnx (data, not code) for files from others. "
            "(`mpx info` reads them without running them.)")
