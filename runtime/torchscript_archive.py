"""A TorchScript archive read as data: its spec, method names and parameter shapes, without
torch and without running anything in it.

`torch.jit.load` is not inspection: it runs the archive's scripted `__setstate__` methods while
it loads (tested: one that writes a file does so), and calling the module runs its code. A
TorchScript file is a program. `mpx info` therefore reads the archive as the zip file it is:
the spec from its extra files, the method names from its code listing, the parameter shapes
from its pickled module tree through an unpickler that builds nothing but inert records (no
class or function of the file's naming is ever imported or called).
"""
from __future__ import annotations

import dataclasses
import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from .contract import TORCHSCRIPT_SPEC_FILE
from .errors import ArtifactError

MAX_PICKLE = 64 << 20  # a module tree larger than this is no mpx model


@dataclasses.dataclass(frozen=True)
class ArchiveInfo:
    spec_json: str | None               # the spec file's text, None when the archive has none
    root_class: str                     # e.g. __torch__.mpx.train.model.NoteLSTM
    methods: tuple[str, ...]            # of the root class, in the listing's order
    shapes: dict[str, tuple[int, ...]]  # every tensor of the module tree, by dotted name
    runs_code_at_load: bool             # a scripted __setstate__ runs inside torch.jit.load


@dataclasses.dataclass(frozen=True)
class _Tensor:
    shape: tuple[int, ...]


class _Object:
    """Stands for any object the pickle names; keeps its state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _tensor(storage: Any, offset: Any, size: Any, *rest: Any) -> _Tensor:
    return _Tensor(tuple(int(n) for n in size) if isinstance(size, (tuple, list)) else ())


def _first(value: Any, *rest: Any) -> Any:
    return value


class InertUnpickler(pickle.Unpickler):
    """find_class returns inert stand-ins only: the file cannot make this import or call
    anything. `named` collects every global the pickle asks for (module.name)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.classes: dict[str, type] = {}
        self.first_class: str | None = None
        self.named: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.named.add(f"{module}.{name}")
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _tensor
        if module == "torch.jit._pickle":  # build_intlist, restore_type_tag, ...: the value itself
            return _first
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        qualified = f"{module}.{name}"
        if self.first_class is None:
            self.first_class = qualified
        return self.classes.setdefault(qualified, type(name, (_Object,), {"qualname": qualified}))

    def persistent_load(self, pid: Any) -> Any:
        return None  # storages: their bytes are not needed for shapes


def _walk(root: Any) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    stack: list[tuple[str, Any]] = [("", root)]
    seen: set[int] = set()
    while stack:
        name, value = stack.pop()
        if isinstance(value, _Tensor):
            shapes.setdefault(name, value.shape)
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, _Object):
            value = getattr(value, "state", None)
        if isinstance(value, dict):
            stack.extend((f"{name}.{k}" if name else str(k), v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{name}.{i}" if name else str(i), v) for i, v in enumerate(value))
    return shapes


def _methods(code: str, class_name: str) -> tuple[str, ...]:
    """Method names of one class in a code listing (`class X(Module):` then `  def m(`)."""
    block = re.search(rf"^class {re.escape(class_name)}\(.*?(?=^class |\Z)", code, re.M | re.S)
    return tuple(re.findall(r"^  def (\w+)\(", block.group(0), re.M)) if block else ()


def read_archive(path: str | Path) -> ArchiveInfo:
    """What a TorchScript archive holds, read without running it; ArtifactError when the file
    is not a TorchScript archive."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return _read(archive, path)
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile raises BadZipFile, NotImplementedError
        # (an unknown "version"), RuntimeError, OSError, EOFError... on damaged bytes
        raise ArtifactError(f"{path}: not a readable TorchScript archive ({type(exc).__name__}: {exc})"[:300]) from None


def _read(archive: zipfile.ZipFile, path: Path) -> ArchiveInfo:
    names = archive.namelist()
    pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if not pickles:
        raise ArtifactError(f"{path}: not a TorchScript archive (no data.pkl)")
    prefix = pickles[0][: -len("data.pkl")]
    if archive.getinfo(pickles[0]).file_size > MAX_PICKLE:
        raise ArtifactError(f"{path}: module tree of {archive.getinfo(pickles[0]).file_size:,} bytes is no mpx model")
    unpickler = InertUnpickler(archive.read(pickles[0]))
    try:
        root = unpickler.load()
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises whatever its bytes provoke
        raise ArtifactError(f"{path}: damaged TorchScript module tree ({type(exc).__name__}: {exc})"[:300]) from None
    root_class = getattr(root, "qualname", unpickler.first_class or "")
    module, _, class_name = root_class.rpartition(".")
    code_file = f"{prefix}code/{module.replace('.', '/')}.py"
    code = archive.read(code_file).decode("utf-8", "replace") if code_file in names else ""
    spec_file = f"{prefix}extra/{TORCHSCRIPT_SPEC_FILE}"
    spec_json = archive.read(spec_file).decode("utf-8", "replace") if spec_file in names else None
    listings = [archive.read(n).decode("utf-8", "replace") for n in names
                if n.startswith(f"{prefix}code/") and n.endswith(".py")]
    return ArchiveInfo(spec_json=spec_json, root_class=root_class, methods=_methods(code, class_name),
                       shapes=_walk(root),
                       runs_code_at_load=any(re.search(r"^\s*def __setstate__\(", text, re.M)
                                             for text in listings))
