"""`mpx info`: what a model file is, what it carries and what it takes (no torch for ONNX)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from . import contract
from .backends import backend_for, check_sizes, lstm_sizes
from .checkpoints import read_header
from .errors import ArtifactError
from .spec import ModelSpec
from .torchscript_archive import read_archive


KINDS = {"onnx": "onnx", "torchscript": "torchscript", "eager": "checkpoint"}  # backend -> file kind


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _contract_io(spec: ModelSpec) -> dict[str, list[dict[str, Any]]]:
    """Shapes as the contract names them, with the model's fixed sizes filled in."""
    sizes: dict[str, int | str] = {"layers": spec.layers, "hidden": spec.hidden}

    def described(names: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:
        return [{"name": n, "shape": contract.shape(a, sizes), "dtype": "float32"} for n, a in names.items()]
    return {"inputs": described(contract.INPUTS), "outputs": described(contract.OUTPUTS)}


def _describe_onnx(path: Path) -> dict[str, Any]:
    from .backends import OnnxBackend
    backend = OnnxBackend(path)
    io = {"inputs": [{"name": i.name, "shape": i.shape, "dtype": i.type} for i in backend.session.get_inputs()],
          "outputs": [{"name": o.name, "shape": o.shape, "dtype": o.type} for o in backend.session.get_outputs()]}
    return {"spec": backend.spec.to_dict(), **io}


def _describe_torchscript(path: Path) -> dict[str, Any]:
    """Read as data (the zip archive), never loaded: torch.jit.load would run its code."""
    archive = read_archive(path)
    if archive.spec_json is None:
        raise ArtifactError(f"{path}: TorchScript archive has no {contract.TORCHSCRIPT_SPEC_FILE}; "
                            "export it with `mpx export`")
    spec = ModelSpec.from_json(archive.spec_json, source=str(path))
    check_sizes(spec, lstm_sizes(archive.shapes), path, "module")
    missing = [m for m in contract.TORCHSCRIPT_METHODS if m not in archive.methods]
    if missing:
        raise ArtifactError(f"{path}: TorchScript module lacks {', '.join(missing)}; not an mpx artifact")
    return {"spec": spec.to_dict(), "methods": list(archive.methods),
            "runs_code_at_load": archive.runs_code_at_load,
            "spec_file": contract.TORCHSCRIPT_SPEC_FILE, **_contract_io(spec)}


def _describe_checkpoint(path: Path) -> dict[str, Any]:
    header = read_header(path)
    check_sizes(header.spec, lstm_sizes(header.weights), path, "weights")
    info = {"spec": header.spec.to_dict(), "weights": header.weights,
            "parameters": sum(_count(v) for v in header.weights.values()), **_contract_io(header.spec)}
    if header.progress:
        info["training_state"] = {k: header.progress.get(k) for k in ("epoch", "step", "best_val", "seconds")}
    return info


def _count(shape: list[int]) -> int:
    total = 1
    for n in shape:
        total *= n
    return total


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such model file")
    kind = KINDS[backend_for(path)]
    describe_kind = {"onnx": _describe_onnx, "torchscript": _describe_torchscript,
                     "checkpoint": _describe_checkpoint}[kind]
    return {"path": str(path), "kind": kind, "bytes": path.stat().st_size,
            "sha256": sha256(path), **describe_kind(path)}


def format_description(info: dict[str, Any]) -> str:
    spec = info["spec"]
    config = spec["config"]
    lines = [f"{info['path']}  ({info['kind']}, {info['bytes']:,} bytes)",
             f"sha256   {info['sha256']}",
             f"model    LSTM hidden {config['hidden']}, layers {config['layers']}, pitch embedding "
             f"{config['embedding']}; bins: step {config['step_bins']} (to {config['step_max']:g} s), "
             f"duration {config['duration_bins']} (to {config['duration_max']:g} s), velocity "
             f"{config['velocity_bins']}; dropout {config['dropout']:g} (training only)",
             f"contract v{spec['spec_version']}; primer/window {spec['seq_len']} notes; default sampling "
             f"temperature {spec['sampling']['temperature']}, top-p {spec['sampling']['top_p']} "
             "(pitch, step, duration, velocity)",
             f"licence  {spec.get('licence') or 'not stated'}"]
    for side in ("inputs", "outputs"):
        for item in info[side]:
            lines.append(f"{side[:-1]:<8} {item['name']:<13} {item['shape']}  {item['dtype']}")
    if "methods" in info:
        lines.append(f"methods  {', '.join(info['methods'])}")
        lines.append("warning  a .pt file is a program: loading it runs its code"
                     + (" (this one defines __setstate__, which torch.jit.load runs)"
                        if info.get("runs_code_at_load") else "")
                     + "; run .pt files only from sources you trust, prefer .onnx from others")
    if "parameters" in info:
        lines.append(f"weights  {len(info['weights'])} tensors, {info['parameters']:,} parameters")
    if info.get("training_state"):
        lines.append(f"training {info['training_state']}")
    for key in ("artifact", "metrics", "data", "training", "versions"):
        if spec.get(key):
            lines.append(f"{key:<8} {json.dumps(spec[key], sort_keys=True)}")
    return "\n".join(lines)
