"""Contract v3 model experiments (phase 1, before the training loop and the runtime follow v3):
train a ChainLSTM on a corpus' training side, score it on the validation side (never the
test side), and run the grown generation report there.

    python benchmarks/v3_experiment.py train --data ../shared/data/asap --out runs/v3/a --hidden 128 \
        --epochs 3 --max-train-files 300
    python benchmarks/v3_experiment.py report --run runs/v3/a --data ../shared/data/asap --pieces 48
    python benchmarks/v3_experiment.py report --v2 artifacts/model.safetensors ...   # v2, same report
    python benchmarks/v3_experiment.py collect --runs runs/v3 --json benchmarks/results/v3_experiments.json

A run folder holds model.pt (state dict + config + options), history.json, report-TAG.json and
the piano rolls of the report; `collect` gathers the options, histories and reports of every
run into one small JSON (docs/v3-model.md reads it). Training follows train/loop.py's recipe
(lanes with the state carried, resets, transposition, Adam with cosine decay, gradient clip),
plus the controls of each position (train/batches.py, conditioned_batch) dropped per chunk.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mpx.runtime import bins, controls as ctl, report, rng as portable
from mpx.runtime.config import ModelConfig
from mpx.runtime.contract import ATTRIBUTES
from mpx.train.batches import LaneDraws, LanePlanner, conditioned_batch, gather
from mpx.train.corpus import load_corpus
from mpx.train.model import NoteLSTM as ChainLSTM

A = len(ATTRIBUTES)


# -- model files -------------------------------------------------------------------------------
def save_model(path: Path, model: ChainLSTM, options: dict[str, Any]) -> None:
    torch.save({"state_dict": model.state_dict(), "config": model.config.to_dict(), "options": options}, path)


def load_model(path: str | Path) -> ChainLSTM:
    path = Path(path)
    saved = torch.load(path / "model.pt" if path.is_dir() else path, weights_only=False)
    model = ChainLSTM(ModelConfig.from_dict(saved["config"]))
    state = saved["state_dict"]
    if state["out_weight"].shape[0] == sum(model.sizes):  # a run from before the heads were padded
        weight, bias = model.out_weight.detach().clone(), model.out_bias.detach().clone()
        for i, n in enumerate(model.sizes):
            rows = slice(model.out_rows[i], model.out_rows[i + 1])
            weight[i * 128:i * 128 + n], bias[i * 128:i * 128 + n] = state["out_weight"][rows], state["out_bias"][rows]
        state = {**state, "out_weight": weight, "out_bias": bias}
    model.load_state_dict(state)
    return model.eval()


def with_sounding(corpus):  # type: ignore[no-untyped-def]
    """The corpus with its notes read with sounding durations (read_notes(pedal=True), cached by
    benchmarks/v3_pedal.py), in a store of their own: same files and splits; a file may lose the
    notes its key's next strike ends at their own onset."""
    from v3_pedal import sounding_store
    notes = sounding_store(list(corpus.files), list(corpus.keys), Path("runs/v3/sounding-notes.npz"))
    store = np.concatenate(notes).astype(np.float32)
    lengths = np.array([len(n) for n in notes], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return dataclasses.replace(corpus, store=store, starts=starts, lengths=lengths)


def load_v2(path: str | Path) -> torch.nn.Module:
    """A contract v2 checkpoint as a NoteLSTM."""
    from safetensors import safe_open
    from mpx.train.model import NoteLSTM
    with safe_open(str(path), framework="pt") as fh:
        spec = json.loads(fh.metadata()["mpx_spec"])
        state = {k[len("model."):]: fh.get_tensor(k) for k in fh.keys() if k.startswith("model.")}
    model = NoteLSTM(ModelConfig.from_dict(spec["config"]))
    model.load_state_dict(state)
    return model.eval()


# -- training ----------------------------------------------------------------------------------
def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    corpus = load_corpus([args.data], splits=["train", "val"])
    if args.pedal:
        corpus = with_sounding(corpus)
    tr = corpus.select("train")
    if args.max_train_files:
        keep = np.random.default_rng(0).permutation(len(tr.files))[:args.max_train_files]
        keep = np.sort(keep)
        tr_starts, tr_lengths = tr.starts[keep], tr.lengths[keep]
    else:
        tr_starts, tr_lengths = tr.starts, tr.lengths
    config = ModelConfig(hidden=args.hidden, embedding=args.embedding, dropout=args.dropout,
                         head_hidden=args.head_hidden, order=tuple(args.order.split(",")),
                         controls_into=args.controls_into)
    model = ChainLSTM(config)
    planner = LanePlanner(corpus.store, tr_starts, tr_lengths, args.seq_len, args.batch_size,
                          args.reset_prob, args.transpose)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = vars(args) | {"train_notes": int(tr_lengths.sum()), "train_files": int(len(tr_starts))}
    history = []
    started = time.perf_counter()
    best = math.inf
    for epoch in range(args.epochs):
        rng = np.random.default_rng([args.seed, epoch])
        plan = planner.plan(rng)
        lanes = plan.starts.shape[1]
        h = torch.zeros(config.layers, lanes, config.hidden)
        c = torch.zeros_like(h)
        model.train()
        total, count = 0.0, 0
        parts_sum = np.zeros(A)
        for s in range(plan.steps):
            progress = (epoch + s / plan.steps) / args.epochs
            lr = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            draws = LaneDraws.draw(rng, plan.starts.shape[1], args.seq_len, args.change)
            x, y, mask, cond = conditioned_batch(corpus.store, plan.starts[s], plan.lengths[s], plan.ends[s],
                                                 args.seq_len, config, plan.shifts[s], draws)
            x, y, mask, cond = (torch.from_numpy(a) for a in (x, y, mask, cond))
            reset = torch.from_numpy(plan.resets[s])
            h, c = (torch.where(reset[None, :, None], 0.0, t) for t in (h, c))
            logits, hn, cn = model.training_scores(x, h, c, cond, y)
            n = mask.sum().clamp_min(1.0)
            parts = [(F.cross_entropy(z.flatten(0, 1), y[..., a].flatten(), reduction="none") * mask.flatten()).sum() / n
                     for a, z in enumerate(logits)]
            loss = sum(parts)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            h, c = hn.detach(), cn.detach()
            total += float(loss.detach()) * float(n)
            count += int(n)
            parts_sum += np.array([float(p) for p in parts]) * float(n)
            if s % 50 == 0:
                print(f"epoch {epoch + 1} step {s}/{plan.steps} loss {total / max(count, 1):.3f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
        val = stateful_ce(model, corpus.select("val").notes)
        row = {"epoch": epoch + 1, "train_loss": total / count,
               **{f"train_{a}": float(v) for a, v in zip(ATTRIBUTES, parts_sum / count)},
               **{f"val_{k}": v for k, v in val.items()}, "seconds": round(time.perf_counter() - started, 1)}
        history.append(row)
        print(json.dumps(row), flush=True)
        (out / "history.json").write_text(json.dumps(history, indent=1))
        loss_now = sum(val[f"{a}_ce"] for a in ATTRIBUTES)
        if loss_now < best:
            best = loss_now
            save_model(out / "model.pt", model, options | {"epoch": epoch + 1})
    print(f"trained in {time.perf_counter() - started:.0f} s")


@torch.no_grad()
def stateful_ce(model: ChainLSTM, notes: list[np.ndarray], chunk: int = 128, lanes: int = 64,
                cond: str = "unset") -> dict[str, float]:
    """Each file from a zero state, every next note, teacher forcing (the graph's logits with the
    real next note given): cross-entropy per attribute (nats) and pitch top-1. cond: "unset"
    (no control given) or "past" (the summaries of the WINDOW notes up to each position: what a
    caller knows without looking ahead)."""
    model.eval()
    planner = LanePlanner.of_notes(list(notes), chunk, lanes, reset_prob=0.0)
    plan = planner.plan(None)
    h = torch.zeros(model.layers, plan.starts.shape[1], model.hidden)
    c = torch.zeros_like(h)
    ce = np.zeros(A)
    top1 = 0.0
    total = 0
    for s in range(plan.steps):
        x, _, mask = gather(planner.data, plan.starts[s], plan.lengths[s], chunk, model.config)
        following = np.minimum(plan.starts[s][:, None] + np.arange(chunk), len(planner.data) - 2) + 1
        y = bins.index(model.config, np.asarray(planner.data[following], np.float32))  # the v3 rule
        if cond == "unset":
            k = np.full((*x.shape[:2], ctl.C), ctl.NOT_GIVEN, np.float32)
        else:
            k = past_controls(planner.data, plan.starts[s], chunk, planner)
        reset = torch.from_numpy(plan.resets[s])
        h, c = (torch.where(reset[None, :, None], 0.0, t) for t in (h, c))
        xt, yt, mt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)
        logits, h, c = model.training_scores(xt, h, c, torch.from_numpy(k), yt)
        for a, z in enumerate(logits):
            ce[a] += float((F.cross_entropy(z.flatten(0, 1), yt[..., a].flatten(), reduction="none") * mt.flatten()).sum())
        top1 += float(((logits[0].argmax(-1) == yt[..., 0]).float() * mt).sum())
        total += int(mt.sum())
    out = {f"{a}_ce": float(ce[i] / total) for i, a in enumerate(ATTRIBUTES)}
    out["pitch_top1"] = top1 / total
    out["predictions"] = total
    return out


def past_controls(store: np.ndarray, starts: np.ndarray, chunk: int, planner: LanePlanner) -> np.ndarray:
    """Summaries of the WINDOW notes up to and including each position, within its file."""
    index = np.minimum(starts[:, None] + np.arange(chunk), len(store) - 2)
    first = np.zeros_like(index)
    for offset, n in zip(planner.offsets, planner.predictions + 1):
        inside = (index >= offset) & (index < offset + n)
        first[inside] = offset
    begin = np.maximum(index - ctl.WINDOW + 1, first)
    counts = index - begin + 1
    windows = store[np.minimum(begin[..., None] + np.arange(ctl.WINDOW), len(store) - 1)]
    return ctl.batch_summaries(windows.reshape(-1, ctl.WINDOW, 4), counts.reshape(-1)).reshape(*index.shape, ctl.C)


# -- generation ----------------------------------------------------------------------------------
class Rollout:
    """Batched eager generation with the v3 graph (a v2 NoteLSTM is wrapped to the same call)."""

    def __init__(self, model: torch.nn.Module, temperature: float = 1.0, top_p: float = 1.0) -> None:
        self.model = model.eval()
        self.v3 = isinstance(model, ChainLSTM)
        self.temperature, self.top_p = temperature, top_p

    @torch.no_grad()
    def run(self, primers: list[np.ndarray], rows: list[int], controls: np.ndarray, seeds: list[int],
            notes: int) -> np.ndarray:
        """rows[r]: which primer row r continues; controls [R, C] (also while priming, as the
        runtime does); -> [R, notes, 4]."""
        r = len(rows)
        k = torch.from_numpy(np.asarray(controls, np.float32))
        h = torch.zeros(self.model.layers, r, self.model.hidden)
        c = torch.zeros_like(h)
        for i, primer in enumerate(primers):
            mine = [j for j, row in enumerate(rows) if row == i]
            if mine:
                h[:, mine], c[:, mine] = self.prime(primer, k[mine])
        x = torch.from_numpy(np.stack([primers[i][-1:] for i in rows]))
        uni = np.concatenate([portable.uniforms(s, 1, 0, notes) for s in seeds], axis=1)  # [notes, R, 8]
        t = torch.full((r, A), self.temperature)
        p = torch.full((r, A), self.top_p)
        given = torch.full((r, A), -1.0)
        out = np.zeros((r, notes, 4), np.float32)
        for n in range(notes):
            u = torch.from_numpy(uni[n])
            if self.v3:
                note, h, c, _ = self.model(x, h, c, u, t, p, k, given)
            else:
                note, h, c, _ = self.model(x, h, c, u, t[0], p[0])
            out[:, n] = note.numpy()
            x = note[:, None, :]
        return out

    def prime(self, primer: np.ndarray, controls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The state of every row of one primer [L, R, H] after all but its last note."""
        rows = len(controls)
        h = torch.zeros(self.model.layers, 1, self.model.hidden)
        c = torch.zeros_like(h)
        if len(primer) < 2:
            return h.repeat(1, rows, 1), c.repeat(1, rows, 1)
        x = torch.from_numpy(np.array(primer[None, :-1]))
        if not self.v3:
            _, (h, c) = self.model.lstm(self.model.encode(x), (h, c))
            return h.repeat(1, rows, 1), c.repeat(1, rows, 1)
        if not self.model.into_lstm:  # the state does not depend on the controls
            _, (h, c) = self.model.lstm(self.model.encode(x, controls[:1]), (h, c))
            return h.repeat(1, rows, 1), c.repeat(1, rows, 1)
        x = x.repeat(rows, 1, 1)
        h, c = h.repeat(1, rows, 1), c.repeat(1, rows, 1)
        _, (h, c) = self.model.lstm(self.model.encode(x, self.model.control_features(controls)), (h, c))
        return h, c


def pieces_of(data: str, split: str, count: int, pedal: bool = False) -> list[tuple[str, np.ndarray]]:
    corpus = load_corpus([data], splits=[split]).select(split)
    if pedal:
        corpus = with_sounding(corpus)
    return report.spread([(f.name, np.asarray(n)) for f, n in zip(corpus.files, corpus.notes)], count)


def run_report(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.v2:
        model = load_v2(args.v2)
        out = Path(args.out or "runs/v3/v2-report")
    else:
        model = load_model(args.run)
        out = Path(args.out or args.run)
    out.mkdir(parents=True, exist_ok=True)
    rollout = Rollout(model, args.temperature, args.top_p)
    pieces = pieces_of(args.data, args.split, args.pieces, args.pedal)
    cuts = [p for p in (report.cut(name, notes) for name, notes in pieces) if p is not None]
    primers = [p.seed[-args.primer:] for p in cuts]
    started = time.perf_counter()
    result: dict[str, Any] = {"split": args.split, "pieces": len(cuts), "model": str(args.v2 or args.run),
                              "temperature": args.temperature, "top_p": args.top_p,
                              "hold": args.hold}
    if isinstance(model, ChainLSTM):
        held = np.stack([ctl.primer_summaries(p) for p in primers])
        unset = {"none": list(range(ctl.C)), "rhythm": [2, 3, *range(6, 18)], "no-pc": list(range(6, 18)),
                 "no-pitch": [2, 3], "primer": []}[args.hold]
        held[:, unset] = ctl.NOT_GIVEN
    else:
        held = np.zeros((len(cuts), ctl.C), np.float32)
    generated = rollout.run(primers, list(range(len(cuts))), held, list(range(len(cuts))), report.GENERATED)
    result["generation_seconds"] = round(time.perf_counter() - started, 1)
    rows = [report.measure(generated[i], piece) for i, piece in enumerate(cuts)]
    summary = report.summarise(rows)
    ceiling = report.summarise([report.measure(piece.second, piece) for piece in cuts])
    result["summary"], result["ceiling"] = summary, ceiling
    result["drift"] = report.drift_report([generated[i] for i in range(len(cuts))], cuts)
    result["intervals"] = report.interval_report([generated[i] for i in range(len(cuts))], cuts)
    if isinstance(model, ChainLSTM) and args.adherence:
        started = time.perf_counter()
        result["adherence"] = adherence(rollout, primers[:args.adherence_seeds], args.adherence_notes,
                                        held[:args.adherence_seeds] if args.adherence_others == "held" else None)
        result["adherence_others"] = args.adherence_others
        result["adherence_seconds"] = round(time.perf_counter() - started, 1)
    if not args.v2 and args.ce:
        corpus = load_corpus([args.data], splits=[args.split]).select(args.split)
        if args.pedal:
            corpus = with_sounding(corpus)
        result["ce_unset"] = stateful_ce(model, corpus.notes)
        result["ce_past"] = stateful_ce(model, corpus.notes, cond="past")
    (out / f"report-{args.tag}.json").write_text(json.dumps(result, indent=1, default=float))
    print(format_result(result))
    if args.rolls:
        from mpx.runtime.plot import piano_roll
        for i in range(0, len(cuts), max(1, len(cuts) // args.rolls))[:args.rolls]:
            piece = cuts[i]
            piano_roll(piece.seed[-64:], generated[i][:256], out / f"roll-{args.tag}-{i:02d}-generated.png",
                       title=f"{piece.name}: generated")
            piano_roll(piece.seed[-64:], piece.real[:256], out / f"roll-{args.tag}-{i:02d}-real.png",
                       title=f"{piece.name}: real continuation")


# Controls that describe one aspect together: timing, register, dynamics, key.
FAMILY_OF = [(0, 1, 5), (0, 1, 5), (2, 3), (2, 3), (4,), (0, 1, 5)] + [tuple(range(6, 18))] * 12
FAMILIES = [list(f) for f in FAMILY_OF]


def adherence(rollout: Rollout, primers: list[np.ndarray], notes: int,
              others: np.ndarray | None = None) -> dict[str, Any]:
    """For each control: 5 requested values across its typical range (the training windows' 10th
    to 90th percentile, runtime/controls.py TYPICAL) on every primer; the other controls not
    given, or as `others` [primers, C] holds them (a pitch class's request leaves the rest of
    the profile unset); the generated notes' summaries against the requests."""
    values = {name: np.linspace(*ctl.TYPICAL[name], 5) for name in ctl.CONTROLS}
    rows, seeds, requests = [], [], []
    for j, name in enumerate(ctl.CONTROLS):
        for v in values[name]:
            for i in range(len(primers)):
                k = ctl.unset() if others is None else others[i].copy()
                k[FAMILIES[j]] = ctl.NOT_GIVEN   # a request releases its family's other controls
                k[j] = v
                rows.append(i)
                seeds.append(1000 + i)
                requests.append(k)
    out = np.concatenate([rollout.run(primers, rows[s:s + 720], np.stack(requests[s:s + 720]), seeds[s:s + 720], notes)
                          for s in range(0, len(rows), 720)])
    made = ctl.batch_summaries(out, np.full(len(out), notes))
    result = {}
    per = 5 * len(primers)
    for j, name in enumerate(ctl.CONTROLS):
        req = np.stack(requests[j * per:(j + 1) * per])[:, j].astype(np.float64)
        got = made[j * per:(j + 1) * per, j].astype(np.float64)
        ok = got >= 0
        result[name] = report.adherence_figures(req[ok], got[ok])
    return result


def format_result(result: dict[str, Any]) -> str:
    s, r = result["summary"], result["ceiling"]
    lines = [f"{result['model']} on {result['pieces']} {result['split']} pieces (controls: {result['hold']})",
             f"{'figure':<22}{'generated':>10}{'real':>10}"]
    for key in ("pace_kept", "tempo_fidelity", "chord_gap", "short_notes", "overlap_pitch", "overlap_step",
                "overlap_duration", "overlap_velocity", "median_tempo_ratio", "chord_share_last", "chord_share_real"):
        lines.append(f"{key:<22}{s[key]:>10.3f}{r[key]:>10.3f}")
    iv = result["intervals"]
    lines.append(f"{'overlap_interval':<22}{iv['generated']:>10.3f}{iv['real']:>10.3f}")
    d = result["drift"]
    for key in ("ioi_ratio", "pitch_change", "pitch_change_abs", "duration_ratio", "chord_share_change"):
        lines.append(f"drift {key:<16}{d['generated'][key]:>10.3f}{d['real'][key]:>10.3f}")
    lines.append(f"{'duration vs real':<22}{d['duration_vs_real']:>10.3f}")
    for key in ("ce_unset", "ce_past"):
        if key in result:
            lines.append(f"{key}: " + ", ".join(f"{a} {result[key][a + '_ce']:.3f}" for a in ATTRIBUTES)
                         + f", pitch top-1 {result[key]['pitch_top1']:.3f}")
    if "adherence" in result:
        for name, f in result["adherence"].items():
            lines.append(f"adherence {name:<16} rank {f['rank_correlation']:.3f} rel.err {f['median_relative_error']:.3f}"
                         f" abs.err {f['median_absolute_error']:.3f}")
    return "\n".join(lines)


def collect(args: argparse.Namespace) -> None:
    """Every run folder under --runs in one JSON: the training options (the command's flags,
    from model.pt), the history per epoch (cut-short runs: the epochs they finished, the
    planned count beside them) and each report (report-TAG.json)."""
    runs: dict[str, Any] = {}
    for folder in sorted(p for p in Path(args.runs).iterdir() if p.is_dir()):
        entry: dict[str, Any] = {}
        if (folder / "model.pt").is_file():
            saved = torch.load(folder / "model.pt", weights_only=False)
            entry["options"], entry["config"] = saved.get("options"), saved.get("config")
        if (folder / "history.json").is_file():
            entry["history"] = json.loads((folder / "history.json").read_text())
            planned = (entry.get("options") or {}).get("epochs")
            entry["epochs_finished"], entry["epochs_planned"] = len(entry["history"]), planned
        entry["reports"] = {f.stem[len("report-"):]: json.loads(f.read_text()) for f in sorted(folder.glob("report-*.json"))}
        runs[folder.name] = entry
    Path(args.json).write_text(json.dumps(runs, indent=1, default=float) + "\n")
    print(f"{len(runs)} runs -> {args.json}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--hidden", type=int, default=128)
    t.add_argument("--embedding", type=int, default=64)
    t.add_argument("--head-hidden", type=int, default=128)
    t.add_argument("--order", default="step,pitch,duration,velocity")
    t.add_argument("--dropout", type=float, default=0.3)
    t.add_argument("--controls-into", default="heads", choices=("heads", "lstm", "both"))
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--max-train-files", type=int)
    t.add_argument("--seq-len", type=int, default=128)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--reset-prob", type=float, default=0.2)
    t.add_argument("--transpose", type=int, default=6)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--pedal", action="store_true", help="sounding durations (sustain pedal applied)")
    t.add_argument("--change", type=float, default=0.0, help="share of lanes whose character changes (batches.py)")
    t.add_argument("--threads", type=int, default=2)
    r = sub.add_parser("report")
    r.add_argument("--run")
    r.add_argument("--v2", help="a v2 checkpoint instead of a run")
    r.add_argument("--data", required=True)
    r.add_argument("--split", default="val", choices=("val", "train"))
    r.add_argument("--pieces", type=int, default=48)
    r.add_argument("--primer", type=int, default=128)
    r.add_argument("--hold", default="primer", choices=("primer", "none", "rhythm", "no-pc", "no-pitch"),
                   help="controls held at the primer's summaries: all, none, all but pitch mean/spread and "
                        "the profile (rhythm), all but the profile (no-pc), all but pitch mean/spread (no-pitch)")
    r.add_argument("--temperature", type=float, default=1.0)
    r.add_argument("--top-p", type=float, default=1.0)
    r.add_argument("--adherence", action="store_true")
    r.add_argument("--adherence-seeds", type=int, default=24)
    r.add_argument("--adherence-others", default="unset", choices=("unset", "held"),
                   help="the other controls while one is requested: not given, or as --hold holds them")
    r.add_argument("--adherence-notes", type=int, default=256)
    r.add_argument("--ce", action="store_true")
    r.add_argument("--rolls", type=int, default=0)
    r.add_argument("--tag", default="val")
    r.add_argument("--pedal", action="store_true", help="pieces read with sounding durations")
    r.add_argument("--out")
    r.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("collect", help="the run folders' options, histories and reports in one JSON")
    c.add_argument("--runs", default="runs/v3")
    c.add_argument("--json", required=True)
    args = p.parse_args(argv)
    {"train": train, "report": run_report, "collect": collect}[args.command](args)


if __name__ == "__main__":
    main()
