"""The spec: the small, versioned record every checkpoint and artifact carries.

It says what the model is (its ModelConfig and the bins that follow from it), how it is fed
(contract version, features, graph names, primer length, default sampling), how it was made
(data, training options, metrics, versions, the weights' licence). The runtime needs nothing
but the spec inside an artifact to generate from it. A spec is checked in one place, when it is
read (`ModelSpec.from_dict`): a damaged spec is refused in one line naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from . import bins, bounded_json, contract, controls
from .checks import is_integer, number
from .config import ModelConfig
from .errors import OptionsError, SpecError

SPEC_VERSION = contract.CONTRACT_VERSION
N = len(contract.ATTRIBUTES)
MAX_SPEC_BYTES = 1 << 20   # a spec is a few kB; its free-form records (training, data, metrics) included
MAX_SPEC_DEPTH = 16        # levels of [ and {: the spec mpx writes nests 5


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Per-attribute sampling parameters (pitch, step, duration, velocity), as the graph takes them."""

    temperature: tuple[float, ...] = (1.0,) * N   # a spec without `sampling` means these
    top_p: tuple[float, ...] = (0.95,) * N

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", per_attribute("temperature", self.temperature))
        object.__setattr__(self, "top_p", per_attribute("top_p", self.top_p))
        for value in self.temperature:
            number("temperature", value, 0, 100, hint="0 = greedy")
        for value in self.top_p:
            number("top_p", value, 0, 1, low_open=True, hint="1 = off")

    def to_dict(self) -> dict[str, list[float]]:
        return {"temperature": list(self.temperature), "top_p": list(self.top_p)}


def per_attribute(name: str, value: object) -> tuple[float, ...]:
    """One number for all four attributes, or four numbers (pitch, step, duration, velocity);
    as numbers or as the command line's text ("0.9" or "1,0.9,0.9,1")."""
    if isinstance(value, str):
        value = value.split(",")
    values = [value] if isinstance(value, (int, float)) else value
    try:
        out = tuple(float(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        out = ()
    if len(out) not in (1, N) or not all(math.isfinite(v) for v in out):
        raise OptionsError(f"{name} takes one number or {N} (pitch,step,duration,velocity), got {value!r}", name)
    return out * N if len(out) == 1 else out


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What travels with the weights. `config` rebuilds the model; the rest documents it."""

    config: ModelConfig
    seq_len: int = 64                          # primer length (at most) and window of the window mode
    spec_version: int = SPEC_VERSION
    features: tuple[str, ...] = contract.FEATURES
    inputs: tuple[str, ...] = tuple(contract.INPUTS)
    outputs: tuple[str, ...] = tuple(contract.OUTPUTS)
    sampling: Sampling = Sampling()            # the defaults generation uses (chosen per model)
    licence: str = ""                          # of the weights (they inherit their data's terms)
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    artifact: dict[str, Any] = dataclasses.field(default_factory=dict)  # format, opset, parity

    @property
    def hidden(self) -> int:
        return self.config.hidden

    @property
    def layers(self) -> int:
        return self.config.layers

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["config"] = self.config.to_dict()
        out["sampling"] = self.sampling.to_dict()
        for key in ("features", "inputs", "outputs"):
            out[key] = list(out[key])
        out["bins"] = bins.describe(self.config)  # derived from config: for readers, never read back
        out["controls"] = controls.describe()     # the same: what the controls input holds
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    def replace(self, **changes: Any) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "spec") -> "ModelSpec":
        return cls.from_dict(parse(text, source), source)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "spec") -> "ModelSpec":
        """The one schema check of a spec: SpecError naming `source` for anything this mpx
        cannot run (another contract version, a damaged config, fields of the wrong type)."""
        if not isinstance(raw, dict):
            raise SpecError(f"{source}: spec is not a JSON object")
        _check_version(raw.get("spec_version"), source)
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in known}
        if "config" not in kwargs:
            raise SpecError(f"{source}: spec has no model config")
        try:
            kwargs["config"] = ModelConfig.from_dict(kwargs["config"])
            if "sampling" in kwargs:
                sampling = kwargs["sampling"]
                if not isinstance(sampling, dict) or set(sampling) != {"temperature", "top_p"}:
                    raise OptionsError("sampling must hold temperature and top_p")
                kwargs["sampling"] = Sampling(**sampling)
        except (OptionsError, TypeError) as exc:
            raise SpecError(f"{source}: spec's {exc}") from None
        for key in ("features", "inputs", "outputs"):
            if key in kwargs:
                kwargs[key] = _strings(kwargs[key], key, source)
        for key in ("training", "data", "metrics", "versions", "artifact"):
            if key in kwargs and not isinstance(kwargs[key], dict):
                raise SpecError(f"{source}: spec field {key} must be a JSON object")
        if not isinstance(kwargs.get("licence", ""), str):
            raise SpecError(f"{source}: spec field licence must be a string")
        spec = cls(**kwargs)
        spec.check(source)
        return spec

    def check(self, source: str = "spec") -> None:
        """Raise SpecError unless this runtime can feed and read a model with this spec."""
        if self.features != contract.FEATURES:
            raise SpecError(f"{source}: features {list(self.features)} differ from the "
                            f"{list(contract.FEATURES)} this mpx feeds")
        if self.inputs != tuple(contract.INPUTS) or self.outputs != tuple(contract.OUTPUTS):
            raise SpecError(f"{source}: graph names {list(self.inputs)} -> {list(self.outputs)} "
                            f"differ from the contract {list(contract.INPUTS)} -> {list(contract.OUTPUTS)}")
        if not is_integer(self.seq_len) or not 1 <= self.seq_len <= 100_000:
            raise SpecError(f"{source}: seq_len must be an integer 1..100000, got {self.seq_len!r}")


def parse(text: str | bytes, source: str = "spec") -> Any:
    """A spec's JSON text as Python values, its size and nesting checked before it is parsed
    (100,000 nested `[` would end in RecursionError); SpecError naming `source` otherwise."""
    try:
        return bounded_json.loads(text, MAX_SPEC_BYTES, MAX_SPEC_DEPTH)
    except bounded_json.JsonLimit as exc:
        raise SpecError(f"{source}: spec {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpecError(f"{source}: spec is not valid JSON ({exc})") from None


def _check_version(version: Any, source: str) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SpecError(f"{source}: spec has no valid spec_version (a positive integer)")
    if version > SPEC_VERSION:
        raise SpecError(f"{source}: spec version {version} is newer than this mpx runs "
                        f"(up to {SPEC_VERSION}); upgrade mpx")
    if version < SPEC_VERSION:
        what = {1: "predicts timing as point values", 2: "draws the attributes of a note independently "
                "and takes no controls"}.get(version, "follows an older contract")
        raise SpecError(f"{source}: follows graph contract v{version}; this mpx runs v{SPEC_VERSION} (one "
                        "note drawn as one chain of decisions, controls, per-row sampling). A "
                        f"v{version} model {what} and cannot be converted: train a new one with this mpx "
                        "(`mpx train`, then `mpx export`)")


def _strings(value: Any, key: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{source}: spec field {key} must be a list of names")
    return tuple(value)
