"""`mpx info`: what a model file is, what it carries and what it takes, for every format of the
registry (runtime/formats.py), read as data: no code in the file runs, and only ONNX needs a
runtime library (onnxruntime, which reads the graph without running it). It runs the checks
every open runs first, and shows whether the file matches the checksum recorded when it was
written (a damaged file is the one-line error opening it would give)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from . import contract, formats, integrity
from .spec import ModelSpec


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


def _count(shape: list[int]) -> int:
    total = 1
    for n in shape:
        total *= n
    return total


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything `mpx info` shows, as one JSON-serialisable record."""
    path = Path(path)
    fmt = formats.of(path)
    facts = fmt.read(path)
    spec: ModelSpec = facts.pop("spec")
    info: dict[str, Any] = {"path": str(path), "kind": fmt.kind, "format": fmt.name,
                            "bytes": path.stat().st_size, "sha256": sha256(path), "spec": spec.to_dict(),
                            "program": fmt.program, "spec_in": fmt.spec_in, **_contract_io(spec), **facts}
    if "weights" in facts:
        info["parameters"] = sum(_count(v) for v in facts["weights"].values())
    return info


def format_description(info: dict[str, Any]) -> str:
    spec = info["spec"]
    config = spec["config"]
    lines = [f"{info['path']}  ({info['kind']}, {info['bytes']:,} bytes)",
             f"sha256   {info['sha256']}",
             f"checksum {integrity.describe(info['integrity'])}",
             f"model    LSTM hidden {config['hidden']}, layers {config['layers']}, pitch embedding "
             f"{config['embedding']}; bins: step {config['step_bins']} (to {config['step_max']:g} s), "
             f"duration {config['duration_bins']} (to {config['duration_max']:g} s), velocity "
             f"{config['velocity_bins']}; dropout {config['dropout']:g} (training only)",
             f"contract v{spec['spec_version']}; primer/window {spec['seq_len']} notes; default sampling "
             f"temperature {spec['sampling']['temperature']}, top-p {spec['sampling']['top_p']} "
             "(pitch, step, duration, velocity)",
             f"licence  {spec.get('licence') or 'not stated'}",
             f"spec in  {info['spec_in']}"]
    for side in ("inputs", "outputs"):
        for item in info[side]:
            lines.append(f"{side[:-1]:<8} {item['name']:<13} {item['shape']}  {item['dtype']}")
    if "methods" in info:
        lines.append(f"methods  {', '.join(info['methods'])}")
    if info.get("time_axis"):
        lines.append(f"time     {'dynamic' if info['time_axis'] == 'dynamic' else 'one note per call (primed note by note)'}")
    if info.get("compiled_for"):
        lines.append("compiled " + ", ".join(f"{k.removeprefix('AOTI_').lower()} {v}"
                                            for k, v in info["compiled_for"].items() if v))
    if info["program"]:
        lines.append(f"warning  a {_suffix(info)} file is a program ({formats.get(info['format']).runs}): "
                     "loading it runs its code"
                     + (" (this one defines __setstate__, which torch.jit.load runs)"
                        if info.get("runs_code_at_load") else "")
                     + f"; run {_suffix(info)} files only from sources you trust, prefer .onnx from others")
    if "parameters" in info:
        lines.append(f"weights  {len(info['weights'])} tensors, {info['parameters']:,} parameters")
    if info.get("training_state"):
        lines.append(f"training {info['training_state']}")
    for key in ("artifact", "metrics", "data", "training", "versions"):
        if spec.get(key):
            lines.append(f"{key:<8} {json.dumps(spec[key], sort_keys=True)}")
    return "\n".join(lines)


def _suffix(info: dict[str, Any]) -> str:
    return formats.get(info["format"]).suffixes[0]
