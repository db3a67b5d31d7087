"""The model's constructor config: frozen, typed, checked once, saved with the weights.

The architecture is rebuilt from this record wherever weights are loaded (whisper's
`ModelDimensions`, nanoGPT's `GPTConfig`); it never comes from command-line flags at load time.
It lives in the runtime because every artifact's spec carries it and `mpx info` shows it
without torch; the model code (mpx.train.model) is built from it.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from .errors import OptionsError

PITCH_INPUTS = ("scalar", "embedding")
TIME_ENCODINGS = ("linear", "log")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    hidden: int = 128             # LSTM hidden size
    layers: int = 1               # LSTM layers
    pitch_scale: float = 128.0    # pitch / pitch_scale is the scalar pitch input
    pitch_input: str = "scalar"   # "scalar" (the tutorial's) or "embedding" (a vector per pitch)
    embedding: int = 32           # embedding size when pitch_input is "embedding" (else stored as 0)
    dropout: float = 0.0          # on the LSTM output (and between layers), training only
    timing: str = "linear"        # step/duration in and out: seconds or log(seconds + 0.01)

    def __post_init__(self) -> None:
        self.check()
        if self.pitch_input != "embedding":  # the config says what the model really uses
            object.__setattr__(self, "embedding", 0)

    def check(self) -> None:
        """Raise OptionsError naming the field and what is allowed."""
        for name in ("hidden", "layers"):
            value = getattr(self, name)
            if not _is_int(value) or not 1 <= value <= 4096:
                raise OptionsError(f"{name} must be an integer 1..4096, got {value!r}")
        if not _is_number(self.pitch_scale) or not self.pitch_scale > 0:
            raise OptionsError(f"pitch_scale must be a number > 0, got {self.pitch_scale!r}")
        if self.pitch_input not in PITCH_INPUTS:
            raise OptionsError(f"pitch_input must be one of {', '.join(PITCH_INPUTS)}, "
                               f"got {self.pitch_input!r}")
        if not _is_int(self.embedding) or not 0 <= self.embedding <= 4096:
            raise OptionsError(f"embedding must be an integer 0..4096, got {self.embedding!r}")
        if self.pitch_input == "embedding" and self.embedding < 1:
            raise OptionsError(f"pitch_input 'embedding' needs embedding >= 1, got {self.embedding}")
        if not _is_number(self.dropout) or not 0 <= self.dropout < 1:
            raise OptionsError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.timing not in TIME_ENCODINGS:
            raise OptionsError(f"timing must be one of {', '.join(TIME_ENCODINGS)}, got {self.timing!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> "ModelConfig":
        """A config from its JSON form; OptionsError on unknown or missing keys, bad values."""
        if not isinstance(raw, dict):
            raise OptionsError(f"config must be a JSON object, got {type(raw).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise OptionsError(f"config has unknown keys {unknown}; known: {names}")
        missing = [n for n in ("hidden", "layers") if n not in raw]
        if missing:
            raise OptionsError(f"config lacks {missing}")
        return cls(**raw)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
