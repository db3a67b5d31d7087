"""Training options: one frozen record, checked in one place, saved in every checkpoint.

The model's architecture is its own record (ModelConfig, in the spec); TrainOptions holds it
next to the options of the loop. The CLI takes its defaults from here and checks nothing itself.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from mpx.runtime.checks import choice, integer, number
from mpx.runtime.config import ModelConfig
from mpx.runtime.errors import OptionsError


@dataclasses.dataclass(frozen=True)
class LossWeights:
    pitch: float = 1.0
    step: float = 1.0
    duration: float = 1.0
    velocity: float = 1.0

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # train/precision.py says what each means


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    model: ModelConfig = ModelConfig()
    epochs: int = 10
    batch_size: int = 64        # lanes: sequences trained side by side
    seq_len: int = 128          # notes per chunk (truncated back-propagation length)
    primer_len: int = 64        # the spec's seq_len: primer (at most) and window length at generation
    lr: float = 3e-3
    min_lr_ratio: float = 0.1   # cosine decay from lr to lr * min_lr_ratio over all epochs
    transpose: int = 0          # random transposition of each run by up to this many semitones
    reset_prob: float = 0.2     # chance of a zero state at a chunk boundary
    character_change: float = 0.5  # share of chunks whose music changes from a random note on,
                                # the controls describing it (train/batches.py CHANGES)
    pitch_weight: float = 1.0   # loss weights: each attribute's cross-entropy (nats)
    step_weight: float = 1.0
    duration_weight: float = 1.0
    velocity_weight: float = 1.0
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"     # autocast on CUDA (bf16, else fp16 with a scaler); fp32 on a CPU
    licence: str = ""           # of the data, which the weights inherit: goes into the spec
    pedal: bool = False         # durations read from MIDI: False key-down, True sounding (the
                                # sustain pedal, runtime/pedal.py); the spec's training records it

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise OptionsError naming the option (as its flag) and what is allowed."""
        if not isinstance(self.model, ModelConfig):
            raise OptionsError(f"model must be a ModelConfig, got {type(self.model).__name__}")
        for name, low, high in (("epochs", 1, 100_000), ("batch_size", 1, 65_536), ("seq_len", 2, 65_536),
                                ("primer_len", 1, 100_000), ("transpose", 0, 24), ("seed", 0, 2**63 - 1)):
            integer(name, getattr(self, name), low, high)
        for name, low, high, low_open in (("lr", 0.0, 10.0, True), ("min_lr_ratio", 0.0, 1.0, False),
                                          ("reset_prob", 0.0, 1.0, False), ("character_change", 0.0, 1.0, False),
                                          ("grad_clip", 0.0, 1e6, True),
                                          ("pitch_weight", 0.0, 1e6, False), ("step_weight", 0.0, 1e6, False),
                                          ("duration_weight", 0.0, 1e6, False),
                                          ("velocity_weight", 0.0, 1e6, False)):
            number(name, getattr(self, name), low, high, low_open=low_open)
        if self.pitch_weight + self.step_weight + self.duration_weight + self.velocity_weight <= 0:
            raise OptionsError("the loss weights are all 0: nothing would be learned")
        if not isinstance(self.licence, str) or len(self.licence) > 500:
            raise OptionsError("licence must be a text of at most 500 characters", "licence")
        device = self.device
        if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
            raise OptionsError(f"device must be one of {', '.join(DEVICES)}, got {device!r}", "device")
        choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.pedal, bool):
            raise OptionsError(f"pedal must be true or false, got {self.pedal!r}", "pedal")

    @property
    def weights(self) -> LossWeights:
        return LossWeights(self.pitch_weight, self.step_weight, self.duration_weight, self.velocity_weight)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model"] = self.model.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], **changes: Any) -> "TrainOptions":
        """Options as saved in a checkpoint (unknown keys of other versions are dropped)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in names}
        kwargs["model"] = ModelConfig.from_dict(kwargs.get("model", {}))
        return cls(**{**kwargs, **changes})

