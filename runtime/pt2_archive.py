"""torch.export (`.pt2`) and AOTInductor (`.aoti.pt2`) archives read as data: the spec, the
weights' shapes and what the archive says about itself, straight from the zip file, without
torch and without loading anything in it; and the checks that make loading one safe to try.

What torch's loader would run, and what is refused here first (tested against torch 2.13):
- pickles: `torch.export.load` unpickles weights and constants marked `use_pickle` with
  weights_only=False, opaque constants with `pickle.loads`, custom objects with torchbind's
  unpickler, and sample inputs with weights_only=True and then, when that fails, False; a
  legacy weights file, or any archive its loader does not take, sends it to an older reader
  that unpickles too. A `.pt2` mpx opens holds no pickle but its sample inputs, whose pickle
  may name nothing but tensors (checked by an unpickler that builds inert records only).
- code in strings: the graph's symbolic sizes (`expr_str`) are parsed by sympy's `sympify`,
  which evaluates them as Python, and its `guards_code` is compiled with `exec` when the module
  is built; a graph node may name any function under `torch` (`torch.utils.cpp_extension.
  load_inline` compiles and loads C++). Each must follow the narrow grammar torch.export writes
  for mpx's graphs: sizes of symbols and integers, comparisons of input sizes, aten operators
  (none that reads or writes files) and the scan/cond/while_loop control flow.
- native code: an archive holding an AOTInductor model loads its shared library, whose
  constructors run; a `.pt2` may hold none, an `.aoti.pt2` exactly one, checked as an ELF file
  whose segments lie inside it (a cut one made the loader die of SIGBUS).

A torch.export archive keeps the spec in its extra files (`<archive>/extra/mpx_spec.json`) and
its weights' shapes in `<archive>/data/weights/model_weights_config.json`; an AOTInductor
package keeps the spec in its metadata (`<package>/data/aotinductor/model/*wrapper_metadata.json`,
beside the platform and instruction set it was compiled for) and its weights' names and shapes
in the generated `*.wrapper.cpp`.
"""
from __future__ import annotations

import dataclasses
import io
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .bounded_json import JsonLimit, loads
from .contract import PT2_SPEC_FILE, SPEC_KEY, TIME_AXIS_KEY
from .errors import ArtifactError
from .torchscript_archive import InertUnpickler

MAX_MEMBER = 64 << 20  # a JSON member larger than this is no mpx artifact's
MAX_GRAPH_DEPTH = 64   # models/model.json of mpx's scan graph nests 16 levels


@dataclasses.dataclass(frozen=True)
class CompiledArchive:
    spec_json: str | None                   # None when the archive carries no mpx spec
    time_axis: str                          # "dynamic", or "1": the export fixed T to one note
    shapes: dict[str, list[int]] | None     # the weights' shapes by name (fqn)
    metadata: dict[str, str]                # the package's own entries (aoti: platform, CPU ISA)


class Refused(ArtifactError):
    """An archive that would make torch run code it carries, or that is not laid out as torch
    writes it for mpx."""


def read_pt2(path: str | Path) -> CompiledArchive:
    return _read(Path(path), "torch.export archive", _pt2)


def read_aoti(path: str | Path) -> CompiledArchive:
    return _read(Path(path), "AOTInductor package", _aoti)


def _read(path: Path, what: str, reader: Any) -> CompiledArchive:
    try:
        with zipfile.ZipFile(path) as archive:
            return reader(_Archive(archive, path), path)
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile raises BadZipFile, NotImplementedError,
        # OSError, EOFError, ValueError... on damaged bytes; json raises ValueError
        raise ArtifactError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})"[:300]) from None


class _Archive:
    """The members of a zip archive under its one top folder."""

    def __init__(self, archive: zipfile.ZipFile, path: Path) -> None:
        self.zip, self.path = archive, path
        names = [n for n in archive.namelist() if not n.endswith("/")]
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1 or any("/" not in n for n in names):
            raise ArtifactError(f"{path}: not an archive torch writes (its members are not under one folder)")
        self.top = tops.pop() + "/"
        self.names = [n[len(self.top):] for n in names]

    def text(self, name: str, limit: int = MAX_MEMBER) -> str:
        if self.zip.getinfo(self.top + name).file_size > limit:
            raise ArtifactError(f"{self.path}: {name} is too large for an mpx artifact")
        return self.data(name).decode("utf-8", "replace")

    def data(self, name: str) -> bytes:
        """A member's bytes, its CRC checked (as the checksum's reading says it)."""
        try:
            return self.zip.read(self.top + name)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, ValueError, zlib.error) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ArtifactError(f"{self.path}: damaged: archive member {self.top}{name} does not read back "
                                f"({reason})") from None

    def json(self, name: str, depth: int = 16) -> Any:
        try:
            return loads(self.text(name), MAX_MEMBER, depth)
        except JsonLimit as exc:
            raise ArtifactError(f"{self.path}: {name} {exc}") from None
        except ValueError:
            raise ArtifactError(f"{self.path}: {name} is not JSON (damaged?)") from None

    def find(self, pattern: str) -> list[str]:
        return [n for n in self.names if re.fullmatch(pattern, n)]


# -- torch.export (.pt2) --------------------------------------------------------------------
_ARCHIVE_RECORDS = r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
_PT2_MEMBERS = re.compile(
    rf"(?:{_ARCHIVE_RECORDS}|models/model\.json|data/sample_inputs/model\.pt"
    r"|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+|extra/[\w.-]+)")


def _pt2(archive: _Archive, path: Path) -> CompiledArchive:
    if "models/model.json" not in archive.names:
        raise ArtifactError(f"{path}: not a torch.export archive (no models/model.json)")
    foreign = [n for n in archive.names if not _PT2_MEMBERS.fullmatch(n)]
    if foreign:
        raise Refused(f"{path}: refused: holds {foreign[0]}, which no torch.export archive of "
                      f"mpx holds ({_why(foreign[0])}); not loaded")
    shapes = _payloads(archive, "data/weights/model_weights_config.json", "weight_", path)
    _payloads(archive, "data/constants/model_constants_config.json", "tensor_", path)
    _sample_inputs(archive, path)
    _graph(archive.json("models/model.json", MAX_GRAPH_DEPTH), path)
    spec = archive.text(f"extra/{PT2_SPEC_FILE}") if f"extra/{PT2_SPEC_FILE}" in archive.names else None
    axis = archive.text(f"extra/{TIME_AXIS_KEY}", 64).strip() if f"extra/{TIME_AXIS_KEY}" in archive.names else "dynamic"
    return CompiledArchive(spec, axis, shapes, {})


def _why(name: str) -> str:
    if name.startswith("data/aotinductor/"):
        return "native code: an AOTInductor model, which torch would load and run"
    if name.endswith(".pt") or "custom_obj" in name or "opaque_obj" in name:
        return "a pickle, which torch would unpickle"
    return "unknown to mpx"


def _payloads(archive: _Archive, config: str, prefix: str, path: Path) -> dict[str, list[int]]:
    """The shapes of the weights (or constants) a payload config lists; Refused for any that
    torch would unpickle (`use_pickle`) or that is not a raw tensor of the archive."""
    if config not in archive.names:
        raise ArtifactError(f"{path}: not a torch.export archive (no {config})")
    entries = archive.json(config).get("config")
    if not isinstance(entries, dict):
        raise ArtifactError(f"{path}: {config} is damaged")
    folder = config.rsplit("/", 1)[0]
    shapes = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("use_pickle") is not False:
            raise Refused(f"{path}: refused: {name} is stored as a pickle (use_pickle), which torch "
                          "would unpickle with weights_only=False; mpx exports raw tensors only")
        file = entry.get("path_name")
        meta = entry.get("tensor_meta")
        if (not isinstance(file, str) or not re.fullmatch(rf"{prefix}\d+", file)
                or f"{folder}/{file}" not in archive.names or not isinstance(meta, dict)):
            raise Refused(f"{path}: refused: {name} is no raw tensor of the archive ({file!r})")
        try:
            shapes[name] = [int(d["as_int"]) for d in meta["sizes"]]
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{path}: {config}: {name} has no fixed shape (damaged?)") from None
    return shapes


TENSOR_GLOBALS = frozenset({"torch._utils._rebuild_tensor_v2", "collections.OrderedDict"} | {
    f"torch.{kind}Storage" for kind in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short",
                                        "Char", "Byte", "Bool")})


def _sample_inputs(archive: _Archive, path: Path) -> None:
    """The sample inputs are a torch.save archive: its pickle may name tensors and their
    storages only (what weights_only=True takes), so torch never falls back to full unpickling."""
    name = "data/sample_inputs/model.pt"
    if name not in archive.names:
        raise ArtifactError(f"{path}: not a torch.export archive (no {name})")
    try:
        with zipfile.ZipFile(io.BytesIO(archive.data(name))) as inner:
            pickles = [n for n in inner.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1 or any(n.endswith(".pkl") and n not in pickles for n in inner.namelist()):
                raise Refused(f"{path}: refused: {name} is not one tensor archive")
            unpickler = InertUnpickler(inner.read(pickles[0]))
            unpickler.load()
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever damaged bytes provoke
        raise ArtifactError(f"{path}: {name} is damaged ({type(exc).__name__})") from None
    foreign = sorted(unpickler.named - TENSOR_GLOBALS)
    if foreign:
        raise Refused(f"{path}: refused: its sample inputs are a pickle that calls {foreign[0]}, "
                      "which torch would run (weights_only=False); not loaded")


# The strings torch evaluates as code when it loads and builds the program, and what mpx's
# graphs put in them (torch.export of the scan LSTM and the sampler).
_SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "FloorDiv",
    "CeilDiv", "CleanDiv", "ModularIndexing", "PythonMod", "Where", "CeilToInt", "FloorToInt",
    "TruncToInt", "IntTrueDiv", "FloatTrueDiv", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or",
    "Not", "True", "False", "positive", "integer", "nonnegative", "real", "finite", "oo"})
_SYMPY_TOKENS = re.compile(r"\s+|[A-Za-z]+|'[su]\d+'|\"[su]\d+\"|-?\d+|[(),=]")
_GUARD_TOKENS = re.compile(r"\s+|L\['[A-Za-z_]\w*'\]|\.size\(\)|\[\d+\]|\d+|==|!=|<=|>=|<|>|\+|-|\*|//|%|\(|\)")
_TARGET = re.compile(r"torch\.ops\.aten\.(\w+)\.\w+|torch\.ops\.higher_order\.(?:scan|cond|while_loop)"
                     r"|_operator\.(?:getitem|add|sub|mul|floordiv|truediv|mod|neg|pow|eq|ne|lt|le|gt|ge)"
                     r"|torch\.sym_(?:max|min|float|int|not|sum|ite)")
_FILE_OPS = frozenset({"from_file", "save", "_print", "warn"})  # aten operators that touch files or print


def _only(tokens: re.Pattern[str], text: str, names: frozenset[str] | None = None) -> bool:
    at = 0
    for match in tokens.finditer(text):
        if match.start() != at:
            return False
        word = match.group()
        if names is not None and word.isalpha() and word not in names:
            return False
        at = match.end()
    return at == len(text)


def _graph(model: Any, path: Path) -> None:
    """Refuse a graph whose strings torch would evaluate as code beyond what torch.export
    writes for mpx, or whose nodes call anything but tensor operators."""
    if not isinstance(model, dict):
        raise ArtifactError(f"{path}: models/model.json is damaged")
    guards = model.get("guards_code", [])
    if not isinstance(guards, list) or not all(isinstance(g, str) and len(g) < 400 and _only(_GUARD_TOKENS, g)
                                               for g in guards):
        raise Refused(f"{path}: refused: its guards_code is not a comparison of input sizes "
                      "(torch would run it as Python when it builds the module); not loaded")
    for key, value in _strings(model):
        if key == "expr_str" and not (len(value) < 2000 and _only(_SYMPY_TOKENS, value, _SYMPY_NAMES)):
            raise Refused(f"{path}: refused: a symbolic size {value[:60]!r} is not an expression of "
                          "sizes (torch would evaluate it as Python); not loaded")
        if key == "target":
            match = _TARGET.fullmatch(value)
            if not match or (match.group(1) or "") in _FILE_OPS:
                raise Refused(f"{path}: refused: its graph calls {value[:80]}, which is not a tensor "
                              "operator mpx exports; not loaded")
    custom = model.get("graph_module", {}).get("graph", {}).get("custom_obj_values")
    if custom:
        raise Refused(f"{path}: refused: its graph uses custom objects (torchbind), which torch "
                      "would unpickle; not loaded")


def _strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, string) for every string in a JSON value, by the key it sits under."""
    stack = [(key, value)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, str):
            yield key, value
        elif isinstance(value, dict):
            stack.extend(value.items())
        elif isinstance(value, list):
            stack.extend((key, v) for v in value)


# -- AOTInductor (.aoti.pt2) ----------------------------------------------------------------
_AOTI_MEMBERS = re.compile(rf"(?:{_ARCHIVE_RECORDS}|data/aotinductor/model/\w+\.(?:wrapper\.cpp|kernel\.cpp"
                           r"|wrapper_metadata\.json|kernel_metadata\.json|wrapper\.so)|extra/[\w.-]+)")
_CONSTANT = re.compile(r"constants_info_\[(\d+)\]\.(shape|original_fqn) = (?:\{([\d, ]*)\}|\"([^\"]*)\");")


def _aoti(archive: _Archive, path: Path) -> CompiledArchive:
    metadata_files = archive.find(r"data/aotinductor/model/\w+\.wrapper_metadata\.json")
    if not metadata_files:
        raise ArtifactError(f"{path}: not an AOTInductor package (no aotinductor model metadata)")
    foreign = [n for n in archive.names if not _AOTI_MEMBERS.fullmatch(n)]
    libraries = archive.find(r"data/aotinductor/model/\w+\.wrapper\.so")
    if foreign:
        raise Refused(f"{path}: refused: holds {foreign[0]}, which no AOTInductor package of mpx "
                      "holds (torch would load it); not loaded")
    if len(libraries) != 1 or len(metadata_files) != 1:
        raise Refused(f"{path}: refused: holds {len(libraries)} compiled libraries, not one; not loaded")
    _elf_complete(archive.data(libraries[0]), libraries[0], path)
    metadata = archive.json(metadata_files[0], 2)
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{path}: AOTInductor metadata is damaged")
    own = {k: str(v) for k, v in metadata.items() if k not in (SPEC_KEY, TIME_AXIS_KEY)}
    wrappers = archive.find(r"data/aotinductor/model/\w+\.wrapper\.cpp")
    shapes = _wrapper_shapes(archive.text(wrappers[0])) if len(wrappers) == 1 else None
    spec = metadata.get(SPEC_KEY)
    return CompiledArchive(spec if isinstance(spec, str) else None, str(metadata.get(TIME_AXIS_KEY, "dynamic")),
                           shapes, own)


def _wrapper_shapes(code: str) -> dict[str, list[int]]:
    """The weights' shapes by name, from the generated C++ (constants_info_[i].shape and
    .original_fqn): what the library was compiled for."""
    found: dict[int, dict[str, Any]] = {}
    for index, field, shape, name in _CONSTANT.findall(code):
        found.setdefault(int(index), {})[field] = (
            [int(n) for n in shape.replace(" ", "").split(",") if n] if field == "shape" else name)
    return {c["original_fqn"]: c["shape"] for c in found.values() if "shape" in c and "original_fqn" in c}


def _elf_complete(data: bytes, name: str, path: Path) -> None:
    """Refuse a shared library that is not a 64-bit little-endian ELF file whose program and
    section headers and loaded segments all lie within it: the loader maps those ranges, and a
    library cut short killed the process with SIGBUS instead of an error."""
    problem = _elf_problem(data)
    if problem:
        raise Refused(f"{path}: damaged: its compiled library {name.rsplit('/', 1)[-1]} {problem}; not loaded")


def _elf_problem(data: bytes) -> str | None:
    if len(data) < 64 or data[:4] != b"\x7fELF":
        return "is not an ELF file"
    if data[4] != 2 or data[5] != 1:
        return "is not a 64-bit little-endian ELF file"
    phoff, shoff = struct.unpack_from("<QQ", data, 32)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 54)
    if phentsize < 56 or phnum == 0 or phoff + phnum * phentsize > len(data):
        return "is cut short (its program headers lie past its end)"
    if shnum and shoff + shnum * shentsize > len(data):
        return "is cut short (its section headers lie past its end)"
    for i in range(phnum):
        kind, _, offset, _, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if kind == 1 and offset + filesz > len(data):  # PT_LOAD
            return f"is cut short at {len(data):,} bytes (a segment ends at {offset + filesz:,})"
    return None
