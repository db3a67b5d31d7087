"""The next-note model: an LSTM over raw (pitch, step, duration) with three heads.

forward(notes, h0, c0) is the graph contract (README): raw notes in (the input encoding
happens here, in one place), logits for the next pitch at every position (no sigmoid, no
softmax), unclipped step and duration, and the state after the last position.

Two input encodings of the pitch, chosen by config:
- "scalar" (the tutorial's): pitch / pitch_scale, one number;
- "embedding": a learned vector per MIDI pitch (the pitch rounded and clipped to 0..127).
  A scalar makes pitch identity, octaves and keys a steep non-linear function of one input;
  on held-out pieces the embedding predicts the next pitch far better (see the model card).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mpx.runtime.config import ModelConfig
from mpx.runtime.contract import VOCAB

TIME_OFFSET = 0.01  # seconds: log(t + 0.01) tells a chord (t ~ 0) from a run (t ~ 0.05)


class LogTime(nn.Module):
    """Seconds -> log(t + 0.01), the LSTM's timing inputs when timing="log"."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = TIME_OFFSET

    def forward(self, seconds: Tensor) -> Tensor:
        return torch.log(torch.clamp(seconds, min=0.0) + self.offset)


class FromLogTime(nn.Module):
    """A head's log(t + 0.01) -> seconds (> -0.01), clamped below e^5 = 148 s."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = TIME_OFFSET

    def forward(self, log_time: Tensor) -> Tensor:
        return torch.exp(torch.clamp(log_time, max=5.0)) - self.offset


class NoteLSTM(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config  # not scripted (TorchScript skips it): forward reads the fields below
        self.hidden = config.hidden
        self.layers = config.layers
        # "log": step and duration enter the LSTM, and leave the heads, as log(t + 0.01).
        # Modules chosen here rather than an `if` in forward: no control flow in either graph.
        self.time_in = LogTime() if config.timing == "log" else nn.Identity()
        self.time_out = FromLogTime() if config.timing == "log" else nn.Identity()
        embedding = config.embedding
        # None for "scalar": TorchScript then compiles only the branch that is used.
        self.pitch_embedding = nn.Embedding(VOCAB, embedding) if embedding else None
        features = embedding + 2 if embedding else 3
        self.lstm = nn.LSTM(features, config.hidden, config.layers, batch_first=True,
                            dropout=config.dropout if config.layers > 1 else 0.0)
        # Training-time only: in eval mode (every export and backend) it is the identity.
        self.dropout = nn.Dropout(config.dropout)
        # The three heads (pitch logits, step, duration) as one layer: one matrix product per
        # call instead of three, and fewer graph nodes, which is most of a one-note step's cost.
        self.vocab = VOCAB
        self.heads = nn.Linear(config.hidden, VOCAB + 2)
        # Derived from config, so not saved: the checkpoint holds learned weights only.
        self.register_buffer("scale", torch.tensor([1.0 / config.pitch_scale, 1.0, 1.0]), persistent=False)

    def encode(self, notes: Tensor) -> Tensor:
        """Raw notes [B, T, 3] -> LSTM input features [B, T, F]."""
        if self.pitch_embedding is not None:
            pitch = torch.clamp(notes[..., 0], 0.0, 127.0).round().long()  # VOCAB - 1
            return torch.cat([self.pitch_embedding(pitch), self.time_in(notes[..., 1:])], dim=-1)
        scaled = notes * self.scale
        return torch.cat([scaled[..., :1], self.time_in(scaled[..., 1:])], dim=-1)

    def forward(self, notes: Tensor, h0: Tensor, c0: Tensor
                ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        y, (hn, cn) = self.lstm(self.encode(notes), (h0, c0))
        y = self.dropout(y)
        out = self.heads(y)
        timing = self.time_out(out[..., self.vocab:])
        return out[..., :self.vocab], timing[..., 0], timing[..., 1], hn, cn

    @torch.jit.export
    def zero_state(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """The (h0, c0) that starts a sequence, so callers need no shape constants of their own."""
        h = torch.zeros(self.layers, batch_size, self.hidden, dtype=self.scale.dtype)
        return h, torch.zeros_like(h)
