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

from mpx.runtime.contract import ATTRIBUTES
from mpx.runtime.errors import MpxError, OptionsError
from mpx.runtime.spec import ModelSpec
from mpx.runtime.versions import versions

from . import checkpoint, distributed, rundir
from .batches import EpochPlan, LaneDraws, LanePlanner, conditioned_batch
from .corpus import Corpus
from .distributed import World
from .eager import EagerBackend
from .evaluate import Totals, stateful_totals
from .loss import note_loss
from .model import NoteLSTM
from .options import TrainOptions
from .precision import Precision, resolve as resolve_precision
from .rundir import BEST, LAST, RunDir

log = logging.getLogger(__name__)

StepHook = Callable[[int, int, float], None]       # (batches done, batches in the epoch, mean loss)
EpochHook = Callable[[dict[str, float]], None]     # the epoch's row of the history
ValidateHook = Callable[[int, int], None]          # (predictions scored, predictions to score)


@dataclasses.dataclass
class TrainResult:
    best: Path
    last: Path
    history: list[dict[str, float]]
    spec: ModelSpec


def resolved_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionsError(f"--device {device}: torch sees no CUDA device here (use --device cpu)")
    return torch.device(device)


def check_device(options: TrainOptions) -> torch.device:
    """The device the options ask for, where their precision can run; OptionsError otherwise.
    Cheap: callers check it before parsing a corpus."""
    device = resolved_device(options.device)
    resolve_precision(options.precision, device)
    return device


class Interrupted(MpxError):
    """Ctrl-C during training; the state was saved to `last` first."""

    exit_code = 130


@contextmanager
def _sigint_flag(signals: tuple[int, ...] = (signal.SIGINT,)) -> Iterator[dict[str, bool]]:
    """First Ctrl-C sets a flag the loop checks between batches; a second one stops at once.

    A rank of a distributed run also takes SIGTERM this way: torchrun passes the signals it
    gets on to its ranks, and they stop together at the next batch after saving.
    """
    flag = {"stop": False}

    def handler(signum: int, frame: object) -> None:
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    try:
        previous = {s: signal.signal(s, handler) for s in signals}
    except ValueError:  # not the main thread: no signal handling, Ctrl-C behaves as usual
        yield flag
        return
    try:
        yield flag
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


class _Stopped(Exception):
    """Ctrl-C inside a validation, raised from its progress callback."""


def fingerprint(corpus: Corpus) -> str:
    return hashlib.sha256("\n".join(sorted(corpus.keys)).encode()).hexdigest()[:16]


class Trainer:
    def __init__(self, corpus: Corpus, out_dir: str | Path, options: TrainOptions,
                 stop: dict[str, bool] | None = None,
                 on_step: Callable[[int, int, float], None] | None = None,
                 on_epoch: Callable[[dict[str, float]], None] | None = None,
                 world: World | None = None,
                 on_validate: Callable[[int, int], None] | None = None) -> None:
        self.options = options
        self.out = Path(out_dir)
        self.world = world or World(device=resolved_device(options.device))
        self.device = self.world.device
        self.train_corpus = corpus.select("train")
        self.val_corpus = corpus.select("val")
        if not self.train_corpus.files:
            raise MpxError("the training split is empty: the corpus needs more files")
        if not self.val_corpus.files:
            raise MpxError("the validation split is empty: the corpus needs at least 2 files "
                           "(or pieces)")
        self.planner = LanePlanner(corpus.store, self.train_corpus.starts, self.train_corpus.lengths,
                                   options.seq_len, options.batch_size, options.reset_prob,
                                   options.transpose, min_lanes=self.world.size)
        self.val_planner = self._val_planner(corpus.store)
        torch.manual_seed(options.seed)
        self.model = NoteLSTM(options.model).to(self.device)
        if self.world.rank:  # the weights start alike (DDP also broadcasts them); dropout differs per rank
            torch.manual_seed(options.seed + self.world.rank)
        self.net = distributed.wrap(self.model, self.world)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=options.lr)
        self.precision = Precision(options.precision, self.device)
        self.stop = stop if stop is not None else {"stop": False}
        self.on_step = on_step
        self.on_epoch = on_epoch
        self.on_validate = on_validate
        self.spec = ModelSpec(
            config=options.model, seq_len=options.primer_len, licence=options.licence,
            training={**options.to_dict(), "data_fingerprint": fingerprint(self.train_corpus)},
            data=corpus.summary(), versions=versions("torch"))
        self.history: list[dict[str, float]] = []
        self.best_val = math.inf
        self.epoch, self.step = 0, 0
        self.seconds = 0.0  # training time over every run of this training, resumes included
        self.lane_count = options.batch_size  # lanes of the plan (all ranks); self.lanes holds this rank's
        self.lanes = self._zero_lanes(len(self.world.lanes(self.lane_count)))

    def _val_planner(self, store: np.ndarray) -> LanePlanner | None:
        """This rank's share of the validation files (all of them in one process)."""
        mine = distributed.share(self.val_corpus.lengths, self.world)
        starts, lengths = self.val_corpus.starts[mine], self.val_corpus.lengths[mine]
        if not (lengths >= 2).any():
            return None
        return LanePlanner(store, starts, lengths, self.options.seq_len, self.options.batch_size, 0.0)

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
        lanes_h = state.extra["lanes.h"]
        self.lane_count = lanes_h.shape[1]
        mine = torch.from_numpy(self.world.lanes(self.lane_count))
        self.lanes = (lanes_h[:, mine].to(self.device), state.extra["lanes.c"][:, mine].to(self.device))
        self._load_rng(state.extra, state.progress.get("world_size", 1))
        self.precision.load(state.progress.get("precision"))
        self.epoch, self.step = state.progress["epoch"], state.progress["step"]
        self.history = state.progress["history"]
        self.best_val = state.progress["best_val"]
        self.seconds = state.progress.get("seconds", 0.0)
        if state.progress.get("train_loss") is not None:
            self.train_loss = state.progress["train_loss"]
        log.info("resumed %s at epoch %d, batch %d", path, self.epoch + 1, self.step)

    def _load_rng(self, extra: dict[str, torch.Tensor], saved_world: int) -> None:
        """Each rank continues its own random stream (dropout) where it was saved."""
        if saved_world != self.world.size and self.world.main:
            log.warning("resuming a run of %d processes with %d: it continues, but not bit for bit "
                        "as it would have", saved_world, self.world.size)
        suffix = f".{self.world.rank}" if self.world.rank else ""
        if f"rng.torch{suffix}" in extra:
            torch.set_rng_state(extra[f"rng.torch{suffix}"])
        if self.device.type == "cuda" and f"rng.cuda{suffix}" in extra:
            torch.cuda.set_rng_state(extra[f"rng.cuda{suffix}"], self.device)

    def save_last(self) -> Path:
        """Every rank takes part (its lanes and random state go into the file); rank 0 writes."""
        extra, optim_meta = _flatten_optimizer(self.optimizer.state_dict())
        extra["lanes.h"], extra["lanes.c"] = (self._all_lanes(t) for t in self.lanes)
        extra.update(self._all_rng())
        progress = {"epoch": self.epoch, "step": self.step, "history": self.history,
                    "best_val": self.best_val, "optimizer": optim_meta, "seconds": self.seconds,
                    "train_loss": getattr(self, "train_loss", None),
                    "options": self.spec.training, "world_size": self.world.size,
                    "precision": self.precision.state()}
        path = self.out / LAST
        if self.world.main:
            checkpoint.save(path, self.spec, self.model.state_dict(), extra, progress)
        self.world.barrier()  # no rank leaves (and lets torchrun stop rank 0) before the file is whole
        return path

    def _all_lanes(self, local: torch.Tensor) -> torch.Tensor:
        """[L, lanes of the plan, H]: every rank's lane states in the plan's lane order."""
        if not self.world.distributed:
            return local
        full = torch.zeros((local.shape[0], self.lane_count, local.shape[2]), device=self.device)
        full[:, torch.from_numpy(self.world.lanes(self.lane_count)).to(self.device)] = local.float()
        return self.world.all_sum(full)

    def _all_rng(self) -> dict[str, torch.Tensor]:
        states = {"rng.torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if not self.world.distributed:
            return states
        out = {}
        for name, state in states.items():
            rows = self.world.gather_rows(state.to(torch.float64)).to(torch.uint8)
            out[name] = rows[0]
            out.update({f"{name}.{r}": rows[r] for r in range(1, self.world.size)})
        return out

    def save_best(self, metrics: dict[str, float]) -> Path:
        spec = self.spec.replace(metrics={"val": metrics, "epoch": self.epoch + 1,
                                          "train_seconds": round(self.seconds, 1)})
        path = self.out / BEST
        if self.world.main:
            checkpoint.save(path, spec, self.model.state_dict())
        return path

    # -- training ---------------------------------------------------------------------------
    def lr_at(self, epoch: int, step: int, steps: int) -> float:
        progress = (epoch + step / max(steps, 1)) / self.options.epochs
        floor = self.options.min_lr_ratio
        return self.options.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def batch(self, plan: EpochPlan, s: int) -> tuple[torch.Tensor, ...]:
        """(inputs [b, T, 4], bins of the next notes [b, T, 4], mask [b, T], controls [b, T, C])
        of this rank's lanes at step s of the plan, read from the memory-mapped store. The
        lanes' control choices are drawn for every lane from (seed, epoch, step), so they do not
        depend on the ranks, and --resume repeats them."""
        lanes = plan.starts.shape[1]
        mine = self.world.lanes(lanes)
        rng = np.random.default_rng([self.options.seed, self.epoch, s, 1])
        draws = LaneDraws.draw(rng, lanes, self.options.seq_len, self.options.character_change).select(mine)
        assert plan.ends is not None
        arrays = conditioned_batch(self.planner.data, plan.starts[s, mine], plan.lengths[s, mine], plan.ends[s, mine],
                                   self.options.seq_len, self.options.model, plan.shifts[s, mine], draws)
        return tuple(torch.from_numpy(a).to(self.device) for a in arrays)

    def run(self) -> TrainResult:
        if self.world.main:
            self.out.mkdir(parents=True, exist_ok=True)
        while self.epoch < self.options.epochs:
            self._train_epoch()
            metrics = self.validation()
            self._stop_if_asked("in the validation of")
            self.history.append({"epoch": self.epoch + 1, **metrics})
            if self.on_epoch:
                self.on_epoch(self.history[-1])
            if metrics["val_loss"] < self.best_val:
                self.best_val = metrics["val_loss"]
                self.save_best(metrics)
            self.epoch, self.step = self.epoch + 1, 0
            self.save_last()
            self._stop_if_asked("after")
        return TrainResult(self.out / BEST, self.out / LAST, self.history, self.spec)

    def _stop_if_asked(self, where: str) -> None:
        """Ctrl-C during a validation (which stops it within a batch) or while a checkpoint was
        written: `last` is saved as it stands and the run ends, as it does between batches.
        Every rank asks (a collective), so the ranks stop together."""
        if not self.world.any(self.stop["stop"]):
            return
        finished = self.step == 0  # the epoch's checkpoints are written: `last` already holds this point
        path = self.out / LAST if finished else self.save_last()
        epoch = self.epoch if finished else self.epoch + 1
        raise Interrupted(f"interrupted {where} epoch {epoch}; saved {path}; continue with --resume")

    def _train_epoch(self) -> None:
        started = time.perf_counter()
        try:
            self._train_batches()
        finally:
            self.seconds += time.perf_counter() - started

    def _train_batches(self) -> None:
        plan = self.planner.plan(np.random.default_rng([self.options.seed, self.epoch]))
        if self.lane_count != plan.starts.shape[1]:
            self.lane_count = plan.starts.shape[1]
            self.lanes = self._zero_lanes(len(self.world.lanes(self.lane_count)))
        self.model.train()
        total, count = 0.0, 0
        for s in range(self.step, plan.steps):
            if self.world.any(self.stop["stop"]):  # every rank stops at the same batch
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
        summed = self.world.all_sum(torch.tensor([total, float(count)], dtype=torch.float64))
        if summed[1] > 0 or not hasattr(self, "train_loss"):  # a resume after the training of the epoch keeps its loss
            self.train_loss = float(summed[0] / max(summed[1], 1))
        self.step = plan.steps  # the epoch's batches are done: a Ctrl-C in its validation resumes there

    def _train_step(self, plan: EpochPlan, s: int) -> tuple[float, int]:
        x, y, mask, controls = self.batch(plan, s)
        reset = torch.from_numpy(plan.resets[s, self.world.lanes(plan.starts.shape[1])]).to(self.device)
        h, c = (torch.where(reset[None, :, None], 0.0, t) for t in self.lanes)
        with self.precision.autocast():
            logits, hn, cn = self.net(x, h, c, controls, y)
        loss, _ = note_loss(logits, y, mask, self.options.weights)
        local = float(loss.detach())
        if self.world.distributed:
            # DDP averages the ranks' gradients; weighting each rank's mean by its share of the
            # batch's predictions makes that average the mean over the whole batch.
            loss = loss * (mask.sum() * self.world.size / max(int(plan.lengths[s].sum()), 1))
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.step(loss, self.optimizer, self.model.parameters(), self.options.grad_clip)
        self.lanes = (hn.detach().float(), cn.detach().float())
        return local, int(mask.sum())

    def _validate_progress(self, done: int, total: int) -> None:
        """Called after every validation batch: a Ctrl-C stops the validation there (a second
        or so), not after the whole validation split."""
        if self.stop["stop"]:
            raise _Stopped
        if self.on_validate:
            self.on_validate(done, total)

    def validation(self) -> dict[str, float]:
        """The stateful pass of `mpx eval` on the validation split (each file from a zero state,
        every next note): cross-entropy per attribute, and their weighted sum, the loss. Ranks
        score their share of the files and add up the sums."""
        totals = Totals(self.model.counts)
        if self.val_planner is not None:
            try:
                totals = stateful_totals(EagerBackend(self.model, self.spec), self.val_planner, self._validate_progress)
            except _Stopped:  # Ctrl-C: the partial sums are not a validation; run() saves `last` and ends
                pass
        if self.world.distributed:
            totals.set_vector(self.world.all_sum(torch.from_numpy(totals.vector())).numpy())
        scores = totals.result()
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


def train(corpus: Corpus, out_dir: str | Path, options: TrainOptions, resume: bool = False,
          on_step: StepHook | None = None, on_epoch: EpochHook | None = None,
          on_validate: ValidateHook | None = None, force: bool = False) -> TrainResult:
    """Train on the corpus's train split, validate on its val split, checkpoint into out_dir.

    With resume, the options saved in out_dir/last.safetensors replace `options` except epochs,
    device and precision. An out_dir holding another run needs resume or force, and is locked
    while the run trains (train/rundir.py). (`mpx train` goes through train/api.py, which
    claims the folder before it parses the corpus.)
    """
    with rundir.claim(out_dir, resume=resume, force=force) as run_dir:
        if resume:
            options = rundir.resumed_options(out_dir, options.epochs, device=options.device,
                                             precision=options.precision)
        return train_in(run_dir, corpus, options, check_device(options), on_step=on_step,
                        on_epoch=on_epoch, on_validate=on_validate)


def train_in(run_dir: RunDir, corpus: Corpus, options: TrainOptions, device: torch.device, *,
             on_step: StepHook | None = None, on_epoch: EpochHook | None = None,
             on_validate: ValidateHook | None = None) -> TrainResult:
    """The training itself, in a folder already claimed, on a device already checked (the
    options are the run's own when it resumes). Started by torchrun (several processes), this
    process trains as one rank of them (train/distributed.py)."""
    started = time.perf_counter()
    world = distributed.start(device)
    signals = (signal.SIGINT, signal.SIGTERM) if world.distributed else (signal.SIGINT,)
    try:
        with _sigint_flag(signals) as stop:
            trainer = Trainer(corpus, run_dir.path, options, stop=stop, on_step=on_step, on_epoch=on_epoch,
                              world=world, on_validate=on_validate)
            if run_dir.resume:
                trainer.resume()
            run_dir.begin()
            result = trainer.run()
    except RuntimeError as exc:
        failure = distributed.lost_contact(exc) if world.distributed else None
        if failure is None:
            raise
        raise failure from None
    finally:
        distributed.stop(world)
    log.info("trained in %.1f s", time.perf_counter() - started)
    return result
