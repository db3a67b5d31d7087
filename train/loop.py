"""The training loop: corpus -> lanes -> model -> loss -> checkpoints (best and last).

`best.safetensors` holds the weights with the lowest validation loss and the spec: what
`mpx export` consumes. `last.safetensors` adds the optimizer, the carried lane states and the
position in the epoch: `--resume` continues from it to the same weights an uninterrupted run
reaches. Ctrl-C is taken between two batches, so what is saved is always a consistent state.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpx.runtime import bins
from mpx.runtime.config import ModelConfig
from mpx.runtime.contract import ATTRIBUTES
from mpx.runtime.errors import MpxError, OptionsError
from mpx.runtime.spec import ModelSpec
from mpx.runtime.versions import versions

from . import checkpoint, rundir
from .batches import EpochPlan, LanePlanner
from .corpus import Corpus
from .eager import EagerBackend
from .evaluate import evaluate_stateful
from .loss import note_loss
from .model import NoteLSTM
from .options import TrainOptions

log = logging.getLogger(__name__)

BEST = "best.safetensors"
LAST = "last.safetensors"


@dataclasses.dataclass
class TrainResult:
    best: Path
    last: Path
    history: list[dict[str, float]]
    spec: ModelSpec


@dataclasses.dataclass(frozen=True)
class Notes:
    """A side of the corpus on the training device: its notes and the bins of each note."""

    notes: torch.Tensor   # [N, 4] float32
    bins: torch.Tensor    # [N, 4] int64: the training targets when a note is the next one

    @classmethod
    def of(cls, notes: np.ndarray, config: ModelConfig, device: torch.device) -> "Notes":
        return cls(torch.from_numpy(notes).to(device), torch.from_numpy(bins.index(config, notes)).to(device))


def resolved_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionsError(f"--device {device}: torch sees no CUDA device here (use --device cpu)")
    return torch.device(device)


class Interrupted(MpxError):
    """Ctrl-C during training; the state was saved to `last` first."""


@contextmanager
def _sigint_flag() -> Iterator[dict[str, bool]]:
    """First Ctrl-C sets a flag the loop checks between batches; a second one stops at once."""
    flag = {"stop": False}

    def handler(signum: int, frame: object) -> None:
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no signal handling, Ctrl-C behaves as usual
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def fingerprint(corpus: Corpus) -> str:
    return hashlib.sha256("\n".join(sorted(corpus.keys)).encode()).hexdigest()[:16]


class Trainer:
    def __init__(self, corpus: Corpus, out_dir: str | Path, options: TrainOptions,
                 stop: dict[str, bool] | None = None,
                 on_step: Callable[[int, int, float], None] | None = None,
                 on_epoch: Callable[[dict[str, float]], None] | None = None) -> None:
        self.options = options
        self.out = Path(out_dir)
        self.device = resolved_device(options.device)
        self.train_corpus = corpus.select("train")
        self.val_corpus = corpus.select("val")
        if not self.train_corpus.files:
            raise MpxError("the training split is empty: the corpus needs more files")
        if not self.val_corpus.files:
            raise MpxError("the validation split is empty: the corpus needs at least 2 files "
                           "(or pieces)")
        self.planner = LanePlanner(self.train_corpus.notes, options.seq_len, options.batch_size,
                                   options.reset_prob, options.transpose)
        self.val_planner = LanePlanner(self.val_corpus.notes, options.seq_len, options.batch_size, 0.0)
        self.train_data = Notes.of(self.planner.data, options.model, self.device)
        self.val_data = Notes.of(self.val_planner.data, options.model, self.device)
        torch.manual_seed(options.seed)
        self.model = NoteLSTM(options.model).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=options.lr)
        self.stop = stop if stop is not None else {"stop": False}
        self.on_step = on_step
        self.on_epoch = on_epoch
        self.spec = ModelSpec(
            config=options.model, seq_len=options.primer_len, licence=options.licence,
            training={**options.to_dict(), "data_fingerprint": fingerprint(self.train_corpus)},
            data=corpus.summary(), versions=versions("torch"))
        self.history: list[dict[str, float]] = []
        self.best_val = math.inf
        self.epoch, self.step = 0, 0
        self.seconds = 0.0  # training time over every run of this training, resumes included
        self.lanes = self._zero_lanes(options.batch_size)

    def _zero_lanes(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.options.model.layers, batch, self.options.model.hidden)
        return torch.zeros(shape, device=self.device), torch.zeros(shape, device=self.device)

    # -- checkpoints ------------------------------------------------------------------------
    def resume(self) -> None:
        path = self.out / LAST
        state = checkpoint.load(path)
        saved = state.progress.get("options", {})
        if saved.get("data_fingerprint") != self.spec.training["data_fingerprint"]:
            raise MpxError(f"{path}: was trained on other data than this run's training split; "
                           "resume with the same DATA and --max-files")
        self.model.load_state_dict(state.state_dict)
        self.optimizer.load_state_dict(_unflatten_optimizer(state.extra, state.progress["optimizer"]))
        self.lanes = (state.extra["lanes.h"].to(self.device), state.extra["lanes.c"].to(self.device))
        torch.set_rng_state(state.extra["rng.torch"])  # dropout masks continue as they would have
        self.epoch, self.step = state.progress["epoch"], state.progress["step"]
        self.history = state.progress["history"]
        self.best_val = state.progress["best_val"]
        self.seconds = state.progress.get("seconds", 0.0)
        log.info("resumed %s at epoch %d, batch %d", path, self.epoch + 1, self.step)

    def save_last(self) -> Path:
        extra, optim_meta = _flatten_optimizer(self.optimizer.state_dict())
        extra["lanes.h"], extra["lanes.c"] = self.lanes
        extra["rng.torch"] = torch.get_rng_state()
        progress = {"epoch": self.epoch, "step": self.step, "history": self.history,
                    "best_val": self.best_val, "optimizer": optim_meta, "seconds": self.seconds,
                    "options": self.spec.training}
        return checkpoint.save(self.out / LAST, self.spec, self.model.state_dict(), extra, progress)

    def save_best(self, metrics: dict[str, float]) -> Path:
        spec = self.spec.replace(metrics={"val": metrics, "epoch": self.epoch + 1,
                                          "train_seconds": round(self.seconds, 1)})
        return checkpoint.save(self.out / BEST, spec, self.model.state_dict())

    # -- training ---------------------------------------------------------------------------
    def lr_at(self, epoch: int, step: int, steps: int) -> float:
        progress = (epoch + step / max(steps, 1)) / self.options.epochs
        floor = self.options.min_lr_ratio
        return self.options.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def batch(self, data: Notes, plan: EpochPlan, s: int) -> tuple[torch.Tensor, ...]:
        """(inputs [B, T, 4], bins of the next notes [B, T, 4], mask [B, T]) for step s of the plan."""
        starts = torch.from_numpy(plan.starts[s]).to(self.device)
        lengths = torch.from_numpy(plan.lengths[s]).to(self.device)
        pos = torch.arange(self.options.seq_len, device=self.device)
        index = (starts[:, None] + pos).clamp_(max=len(data.notes) - 2)
        mask = (pos < lengths[:, None]).float()
        x, y = data.notes[index], data.bins[index + 1]
        if plan.shifts[s].any():  # transposition: the pitch input and the pitch bin move together
            shift = torch.from_numpy(plan.shifts[s]).to(self.device)[:, None]
            x[..., 0] = (x[..., 0] + shift).clamp_(0, 127)
            y[..., 0] = (y[..., 0] + shift).clamp_(0, 127)
        return x, y, mask

    def run(self) -> TrainResult:
        self.out.mkdir(parents=True, exist_ok=True)
        while self.epoch < self.options.epochs:
            self._train_epoch()
            metrics = self.validation()
            self.history.append({"epoch": self.epoch + 1, **metrics})
            if self.on_epoch:
                self.on_epoch(self.history[-1])
            if metrics["val_loss"] < self.best_val:
                self.best_val = metrics["val_loss"]
                self.save_best(metrics)
            self.epoch, self.step = self.epoch + 1, 0
            self.save_last()
        return TrainResult(self.out / BEST, self.out / LAST, self.history, self.spec)

    def _train_epoch(self) -> None:
        started = time.perf_counter()
        try:
            self._train_batches()
        finally:
            self.seconds += time.perf_counter() - started

    def _train_batches(self) -> None:
        plan = self.planner.plan(np.random.default_rng([self.options.seed, self.epoch]))
        if self.lanes[0].shape[1] != plan.starts.shape[1]:
            self.lanes = self._zero_lanes(plan.starts.shape[1])
        self.model.train()
        total, count = 0.0, 0
        for s in range(self.step, plan.steps):
            if self.stop["stop"]:
                self.step = s
                path = self.save_last()
                raise Interrupted(f"interrupted at epoch {self.epoch + 1}, batch {s}; saved "
                                  f"{path}; continue with --resume")
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.epoch, s, plan.steps)
            loss, n = self._train_step(plan, s)
            total, count = total + loss * n, count + n
            if self.on_step:
                self.on_step(s + 1, plan.steps, total / max(count, 1))
        self.train_loss = total / max(count, 1)

    def _train_step(self, plan: EpochPlan, s: int) -> tuple[float, int]:
        x, y, mask = self.batch(self.train_data, plan, s)
        reset = torch.from_numpy(plan.resets[s]).to(self.device)
        h, c = (torch.where(reset[None, :, None], 0.0, t) for t in self.lanes)
        logits, hn, cn = self.model.scores(x, h, c)
        loss, _ = note_loss(logits, y, mask, self.model.counts, self.options.weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.options.grad_clip)
        self.optimizer.step()
        self.lanes = (hn.detach(), cn.detach())
        return float(loss.detach()), int(mask.sum())

    def validation(self) -> dict[str, float]:
        """The stateful pass of `mpx eval` on the validation split (each file from a zero state,
        every next note): cross-entropy per attribute, and their weighted sum, the loss."""
        scores = evaluate_stateful(EagerBackend(self.model, self.spec), self.val_corpus.notes,
                                   lanes=self.options.batch_size, chunk=self.options.seq_len)
        parts = {f"val_{name}": scores[f"{name}_ce"] for name in ATTRIBUTES}
        weights = self.options.weights
        loss = sum(getattr(weights, name) * parts[f"val_{name}"] for name in ATTRIBUTES)
        return {"train_loss": getattr(self, "train_loss", math.nan), "val_loss": loss, **parts}


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state dict -> tensors (safetensors) + JSON-able rest (param groups, scalars)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def check_out_dir(out_dir: str | Path, resume: bool) -> None:
    """Fail before any work when the run could not be written or resumed."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MpxError(f"{out}: exists and is not a directory")
    if resume and not (out / LAST).is_file():
        raise MpxError(f"{out / LAST}: nothing to resume")


def resumed_options(out_dir: str | Path, epochs: int) -> TrainOptions:
    """The options of the run saved in out_dir/last.safetensors, with a new epoch target.

    Everything else comes from the checkpoint: the architecture is never rebuilt from flags.
    """
    check_out_dir(out_dir, resume=True)
    saved = checkpoint.load(Path(out_dir) / LAST).progress.get("options", {})
    return TrainOptions.from_dict(saved, epochs=epochs)


def train(corpus: Corpus, out_dir: str | Path, options: TrainOptions, resume: bool = False,
          on_step: Callable[[int, int, float], None] | None = None,
          on_epoch: Callable[[dict[str, float]], None] | None = None, force: bool = False) -> TrainResult:
    """Train on the corpus's train split, validate on its val split, checkpoint into out_dir.

    With resume, the options saved in out_dir/last.safetensors replace `options` except epochs.
    An out_dir holding another run needs resume or force (train/rundir.py).
    """
    started = time.perf_counter()
    with rundir.claim(out_dir, resume=resume, force=force) as run_dir:
        if resume:
            options = resumed_options(out_dir, options.epochs)
        with _sigint_flag() as stop:
            trainer = Trainer(corpus, out_dir, options, stop=stop, on_step=on_step, on_epoch=on_epoch)
            if resume:
                trainer.resume()
            run_dir.begin()
            result = trainer.run()
    log.info("trained in %.1f s", time.perf_counter() - started)
    return result
