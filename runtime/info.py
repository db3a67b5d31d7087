"""`mpx info`: what a model file is, what it carries and what it takes (no torch for ONNX)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .backends import TS_SPEC_FILE, backend_for
from .errors import ArtifactError, MpxError
from .spec import INPUTS, OUTPUTS, SPEC_KEY, ModelSpec


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _contract_io(spec: ModelSpec) -> dict[str, list[dict[str, Any]]]:
    """Shapes as the contract names them, with the model's fixed sizes filled in."""
    sizes = {"layers": spec.layers, "hidden": spec.hidden, "feature": 3, "vocab": 128}

    def shape(axes: tuple[str, ...]) -> list[int | str]:
        return [sizes.get(a, a) for a in axes]
    return {"inputs": [{"name": n, "shape": shape(a), "dtype": "float32"} for n, a in INPUTS.items()],
            "outputs": [{"name": n, "shape": shape(a), "dtype": "float32"} for n, a in OUTPUTS.items()]}


def _describe_onnx(path: Path) -> dict[str, Any]:
    from .backends import OnnxBackend
    backend = OnnxBackend(path)
    io = {"inputs": [{"name": i.name, "shape": i.shape, "dtype": i.type} for i in backend.session.get_inputs()],
          "outputs": [{"name": o.name, "shape": o.shape, "dtype": o.type} for o in backend.session.get_outputs()]}
    return {"spec": backend.spec.to_dict(), **io}


def _describe_torchscript(path: Path) -> dict[str, Any]:
    from .backends import TorchScriptBackend
    backend = TorchScriptBackend(path)
    methods = [m for m in ("forward", "zero_state") if hasattr(backend.module, m)]
    return {"spec": backend.spec.to_dict(), "methods": methods,
            "spec_file": TS_SPEC_FILE, **_contract_io(backend.spec)}


def _describe_checkpoint(path: Path) -> dict[str, Any]:
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise MpxError("reading a checkpoint needs safetensors: pip install 'mpx[train]'") from None
    try:
        with safe_open(str(path), framework="numpy") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if SPEC_KEY not in metadata:
        raise ArtifactError(f"{path}: safetensors file carries no mpx spec (not an mpx checkpoint)")
    spec = ModelSpec.from_json(metadata[SPEC_KEY], source=str(path))
    weights = {k: v for k, v in tensors.items() if k.startswith("model.")}
    info = {"spec": spec.to_dict(), "weights": weights,
            "parameters": sum(_count(v) for v in weights.values()), **_contract_io(spec)}
    if "mpx_progress" in metadata:
        progress = json.loads(metadata["mpx_progress"])
        info["training_state"] = {k: progress.get(k) for k in ("epoch", "step", "best_val", "seconds")}
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
    kind = {"onnx": "onnx", "torchscript": "torchscript", "eager": "checkpoint"}[backend_for(path)]
    describe_kind = {"onnx": _describe_onnx, "torchscript": _describe_torchscript,
                     "checkpoint": _describe_checkpoint}[kind]
    return {"path": str(path), "kind": kind, "bytes": path.stat().st_size,
            "sha256": sha256(path), **describe_kind(path)}


def format_description(info: dict[str, Any]) -> str:
    spec = info["spec"]
    lines = [f"{info['path']}  ({info['kind']}, {info['bytes']:,} bytes)",
             f"sha256   {info['sha256']}",
             f"model    LSTM hidden {spec['config']['hidden']}, layers {spec['config']['layers']}, "
             f"pitch scale {spec['config'].get('pitch_scale', 128)}; primer/window {spec['seq_len']} notes; "
             f"spec v{spec['spec_version']}"]
    for side in ("inputs", "outputs"):
        for item in info[side]:
            lines.append(f"{side[:-1]:<8} {item['name']:<13} {item['shape']}  {item['dtype']}")
    if "methods" in info:
        lines.append(f"methods  {', '.join(info['methods'])}")
    if "parameters" in info:
        lines.append(f"weights  {len(info['weights'])} tensors, {info['parameters']:,} parameters")
    if info.get("training_state"):
        lines.append(f"training {info['training_state']}")
    for key in ("artifact", "metrics", "data", "training", "versions"):
        if spec.get(key):
            lines.append(f"{key:<8} {json.dumps(spec[key], sort_keys=True)}")
    return "\n".join(lines)
