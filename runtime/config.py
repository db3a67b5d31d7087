"""The model's constructor config: frozen, typed, checked once, saved with the weights.

The architecture is rebuilt from this record wherever weights are loaded (whisper's
`ModelDimensions`, nanoGPT's `GPTConfig`); it never comes from command-line flags at load time.
It lives in the runtime because every artifact's spec carries it and `mpx info` shows it
without torch; the model code (mpx.train.model) is built from it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .checks import integer, number
from .contract import ATTRIBUTES, VOCAB
from .errors import OptionsError


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    hidden: int = 256             # LSTM hidden size
    layers: int = 1               # LSTM layers
    embedding: int = 64           # size of the learned vector per pitch (the LSTM's pitch input)
    dropout: float = 0.0          # on the LSTM output (and between layers), training only
    step_bins: int = 64           # step: bins uniform in log(t + 0.01) from 0 s ...
    step_max: float = 4.0         # ... to this many seconds (longer steps fall in the last bin)
    duration_bins: int = 64       # duration: the same, up to duration_max seconds
    duration_max: float = 8.0
    velocity_bins: int = 32       # velocity: bins of equal width over 1..127
    order: tuple[str, ...] = ("step", "pitch", "duration", "velocity")  # the chain: each head
                                  # sees the attributes drawn before it for the same note
    head_hidden: int = 128        # width of each attribute's head (one hidden layer)
    controls_into: str = "heads"  # where the controls go: "heads", "lstm" (its input) or "both"

    def __post_init__(self) -> None:
        if isinstance(self.order, list):  # its JSON form
            object.__setattr__(self, "order", tuple(self.order))
        self.check()

    def check(self) -> None:
        """Raise OptionsError naming the field and what is allowed."""
        for name, low, high in (("hidden", 1, 4096), ("layers", 1, 16), ("embedding", 1, 1024),
                                ("step_bins", 2, VOCAB), ("duration_bins", 2, VOCAB),
                                ("velocity_bins", 2, VOCAB)):
            integer(name, getattr(self, name), low, high)
        for name in ("step_max", "duration_max"):
            number(name, getattr(self, name), 0.05, 600, unit="seconds")
        number("dropout", self.dropout, 0, 1, high_open=True)
        integer("head_hidden", self.head_hidden, 1, 4096)
        if self.controls_into not in ("heads", "lstm", "both"):
            raise OptionsError(f"controls_into must be heads, lstm or both, got {self.controls_into!r}", "controls_into")
        if not isinstance(self.order, tuple) or sorted(map(str, self.order)) != sorted(ATTRIBUTES):
            raise OptionsError(f"order must name each of {', '.join(ATTRIBUTES)} once, got {self.order!r}", "order")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["order"] = list(self.order)
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> "ModelConfig":
        """A config from its JSON form; OptionsError on unknown or missing keys, bad values."""
        if not isinstance(raw, dict):
            raise OptionsError(f"config must be a JSON object, got {type(raw).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise OptionsError(f"config has unknown keys {unknown}; known: {names}")
        missing = [n for n in names if n not in raw]
        if missing:
            raise OptionsError(f"config lacks {missing}")
        return cls(**raw)

