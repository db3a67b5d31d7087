"""Make the bundled v3 checkpoint from a run of `v3_experiment.py train` (docs/v3-model.md).

The bundled model is run F-full256 of docs/v3-model.md: `v3_experiment.py train` on every
training file of ASAP, hidden 256, 6 epochs, controls into the heads, chain order step, pitch,
duration, velocity. This script writes its weights as an mpx checkpoint with the spec `mpx
train` would have written (options, data summary and fingerprint, the run's validation figures),
so that `mpx export` / `mpx eval` read it like any other:

    python benchmarks/v3_bundle.py runs/v3/F-full256/model.pt ../shared/data/asap \\
        --out artifacts/model.safetensors --force
    mpx export --checkpoint artifacts/model.safetensors --out-dir artifacts --force

The weights are not changed; the spec records that they came from the experiment's loop.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mpx.runtime.config import ModelConfig
from mpx.train import checkpoint
from mpx.train.corpus import load_corpus
from mpx.runtime.versions import versions
from mpx.train.loop import fingerprint
from mpx.train.model import NoteLSTM
from mpx.train.options import TrainOptions
from mpx.runtime.spec import ModelSpec, Sampling

LICENCE = "CC BY-NC-SA 4.0 (inherited from the ASAP dataset)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="model.pt of a v3_experiment.py run")
    parser.add_argument("data", type=Path, help="the corpus it was trained on (for the spec's data summary)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--primer-len", type=int, default=128)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"v3_bundle: {args.out} exists (use --force to replace it)", file=sys.stderr)
        return 1
    saved = torch.load(args.run, map_location="cpu", weights_only=True)
    config = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()})
    model = NoteLSTM(config)
    model.load_state_dict(saved["state_dict"])  # strict: the run's model is mpx's model
    run = saved["options"]
    options = TrainOptions(model=config, epochs=run["epochs"], batch_size=run["batch_size"],
                           seq_len=run["seq_len"], primer_len=args.primer_len, lr=run["lr"],
                           transpose=run["transpose"], reset_prob=run["reset_prob"],
                           character_change=float(run.get("change") or 0.0), seed=run["seed"],
                           device="cpu", licence=LICENCE)
    corpus = load_corpus([args.data])
    train = corpus.select("train")
    if len(train.files) != run["train_files"]:
        raise SystemExit(f"v3_bundle: {args.data} has {len(train.files)} training files, the run had "
                         f"{run['train_files']}")
    history = json.loads((args.run.parent / "history.json").read_text())
    last = history[-1]
    val = {f"val_{name}": last[f"val_{name}_ce"] for name in ("pitch", "step", "duration", "velocity")}
    val["val_loss"] = sum(val.values())
    val["train_loss"] = last["train_loss"]
    spec = ModelSpec(
        config=config, seq_len=args.primer_len, licence=LICENCE,
        # the sampling docs/v3-model.md's generation figures were measured with
        sampling=Sampling(temperature=(1.0,) * 4, top_p=(1.0,) * 4),
        training={**options.to_dict(), "data_fingerprint": fingerprint(train),
                  "trained_by": "benchmarks/v3_experiment.py train (docs/v3-model.md, run F-full256)"},
        data=corpus.summary(), versions=versions("torch"),
        metrics={"epoch": last["epoch"], "train_seconds": last["seconds"], "val": val})
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    checkpoint.save(args.out, spec, state)
    print(f"wrote {args.out}: epoch {last['epoch']}, validation cross-entropy {val['val_loss']:.3f} "
          "nats per note (stateful, controls not given)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
