"""The spec: the small, versioned record every checkpoint and artifact carries.

It says what the model is (constructor config), how it is fed (features, pitch scale, graph
names), how it was made (data, training options, metrics, versions). The runtime needs nothing
but the spec inside an artifact to generate from it.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from .errors import SpecError

SPEC_VERSION = 1
FEATURES = ("pitch", "step", "duration")
VOCAB = 128

# The graph contract (README, "Graph contract"), declared once. Axis names per input/output, by position.
INPUTS: dict[str, tuple[str, ...]] = {
    "notes": ("batch", "time", "feature"),
    "h0": ("layers", "batch", "hidden"),
    "c0": ("layers", "batch", "hidden"),
}
OUTPUTS: dict[str, tuple[str, ...]] = {
    "pitch_logits": ("batch", "time", "vocab"),
    "step": ("batch", "time"),
    "duration": ("batch", "time"),
    "hn": ("layers", "batch", "hidden"),
    "cn": ("layers", "batch", "hidden"),
}
DYNAMIC_AXES = ("batch", "time")

# Key under which artifacts store the spec: ONNX metadata_props, TorchScript extra files,
# safetensors metadata.
SPEC_KEY = "mpx_spec"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What travels with the weights. `config` rebuilds the model; the rest documents it."""

    config: dict[str, Any]                     # NoteLSTM(**config): hidden, layers, pitch_scale
    seq_len: int = 25                          # primer length / window of the window mode
    spec_version: int = SPEC_VERSION
    features: tuple[str, ...] = FEATURES
    inputs: tuple[str, ...] = tuple(INPUTS)
    outputs: tuple[str, ...] = tuple(OUTPUTS)
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    artifact: dict[str, Any] = dataclasses.field(default_factory=dict)  # format, opset, parity
    # Quantiles (evenly spaced levels 0..1) of target / prediction for "step" and "duration" on
    # held-out data: the sampler draws timing from them (see runtime/sampling.py). Optional.
    timing: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    @property
    def hidden(self) -> int:
        return int(self.config["hidden"])

    @property
    def layers(self) -> int:
        return int(self.config["layers"])

    @property
    def pitch_scale(self) -> float:
        return float(self.config.get("pitch_scale", VOCAB))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("features", "inputs", "outputs"):
            out[key] = list(out[key])
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    def replace(self, **changes: Any) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "spec") -> "ModelSpec":
        if not isinstance(raw, dict):
            raise SpecError(f"{source}: spec is not a JSON object")
        version = raw.get("spec_version")
        if not isinstance(version, int):
            raise SpecError(f"{source}: spec has no integer spec_version")
        if version > SPEC_VERSION:
            raise SpecError(f"{source}: spec version {version} is newer than this mpx runs "
                            f"(up to {SPEC_VERSION}); upgrade mpx")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in known}
        for key in ("features", "inputs", "outputs"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        try:
            spec = cls(**kwargs)
        except TypeError as exc:
            raise SpecError(f"{source}: spec is incomplete ({exc})") from None
        spec.validate(source)
        return spec

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "spec") -> "ModelSpec":
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SpecError(f"{source}: spec is not valid JSON ({exc})") from None
        return cls.from_dict(raw, source)

    def validate(self, source: str = "spec") -> None:
        """Raise SpecError unless this runtime can feed and read a model with this spec."""
        if self.features != FEATURES:
            raise SpecError(f"{source}: features {list(self.features)} differ from the "
                            f"{list(FEATURES)} this mpx feeds")
        if self.inputs != tuple(INPUTS) or self.outputs != tuple(OUTPUTS):
            raise SpecError(f"{source}: graph names {list(self.inputs)} -> {list(self.outputs)} "
                            f"differ from the contract {list(INPUTS)} -> {list(OUTPUTS)}")
        for key in ("hidden", "layers"):
            value = self.config.get(key)
            if not isinstance(value, int) or value < 1:
                raise SpecError(f"{source}: config.{key} must be a positive integer, got {value!r}")
        if not isinstance(self.seq_len, int) or self.seq_len < 1:
            raise SpecError(f"{source}: seq_len must be a positive integer, got {self.seq_len!r}")
