"""v3 graph experiments (phase 1, before the exporters follow contract v3): export a ChainLSTM to
ONNX with the v3 names and dynamic axes, count its nodes, and time one graph call in
onnxruntime at B = 1 and B = 64 next to the bundled v2 graph, timed the same way in the same
run (the machine is shared: only figures of one run compare).

    python benchmarks/v3_graph.py [--checkpoint PATH] [--calls 2000] [--threads 1] [--json PATH]
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

import common
from mpx.runtime import controls as ctl
from mpx.runtime.config import ModelConfig
from mpx.train.model import NoteLSTM as ChainLSTM

V3_INPUTS = {"notes": ("batch", "time"), "h0": (None, "batch"), "c0": (None, "batch"), "uniforms": ("batch",),
             "temperature": ("batch",), "top_p": ("batch",), "controls": ("batch",), "given": ("batch",)}
V3_OUTPUTS = {"next_note": ("batch",), "hn": (None, "batch"), "cn": (None, "batch"), "logits": ("batch", "time")}


def axes(table: dict[str, tuple]) -> dict[str, dict[int, str]]:
    return {name: {i: a for i, a in enumerate(ax) if a} for name, ax in table.items()}


def example(model: ChainLSTM, batch: int, time_: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    notes = torch.rand(batch, time_, 4, generator=gen) * torch.tensor([127.0, 0.5, 1.0, 126.0])
    notes[..., 0] = notes[..., 0].round()
    notes[..., 3] = notes[..., 3].round() + 1.0
    return (notes, *model.zero_state(batch), torch.rand(batch, 8, generator=gen), torch.ones(batch, 4),
            torch.ones(batch, 4), torch.full((batch, ctl.C), -1.0), torch.full((batch, 4), -1.0))


def export_onnx(model: ChainLSTM, opset: int = 17) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), example(model, 2, 5), buffer, dynamo=False, opset_version=opset,
                          input_names=list(V3_INPUTS), output_names=list(V3_OUTPUTS),
                          dynamic_axes={**axes(V3_INPUTS), **axes(V3_OUTPUTS)}, do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    return proto


def session(data: bytes, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def feeds(sess: ort.InferenceSession, batch: int, hidden: int, v3: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    notes = np.array([[[60, 0.1, 0.2, 64]]], np.float32).repeat(batch, 0)
    feed = {"notes": notes, "h0": np.zeros((1, batch, hidden), np.float32), "c0": np.zeros((1, batch, hidden), np.float32),
            "uniforms": rng.random((batch, 8), dtype=np.float32)}
    if v3:
        feed.update(temperature=np.ones((batch, 4), np.float32), top_p=np.ones((batch, 4), np.float32),
                    controls=np.full((batch, ctl.C), -1.0, np.float32), given=np.full((batch, 4), -1.0, np.float32))
    else:
        feed.update(temperature=np.ones(4, np.float32), top_p=np.ones(4, np.float32))
    return feed


def time_calls(sessions: dict[str, tuple[ort.InferenceSession, dict[str, np.ndarray]]], calls: int,
               rounds: int = 15) -> dict[str, float]:
    """CPU us per call of each session (one intra-op thread, so the process's CPU time is the
    graph's, however busy the shared machine is), state carried: the sessions take turns for
    `rounds` rounds of `calls` calls; the lowest quartile of the rounds."""
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for r in range(rounds + 1):
        for key, (sess, feed) in sessions.items():
            f = dict(feed)
            started = time.process_time()
            for _ in range(calls):
                out = sess.run(None, f)
                f["h0"], f["c0"] = out[1], out[2]
            if r:
                times[key].append((time.process_time() - started) / calls * 1e6)
    return {k: float(np.min(v)) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, help="a ChainLSTM checkpoint (default: random weights, default config)")
    p.add_argument("--calls", type=int, default=200, help="calls per round at B = 1 (B = 64: a 16th)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--json")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.checkpoint:
        from v3_experiment import load_model
        model = load_model(args.checkpoint)
    else:
        model = ChainLSTM(ModelConfig())
    proto = export_onnx(model)
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    v3 = session(proto.SerializeToString(), args.threads)
    v2 = session((common.ARTIFACTS / "music_producter.onnx").read_bytes(), args.threads)
    result = {"nodes_v3": sum(ops.values()), "ops_v3": dict(ops), "threads": args.threads, "top_p": args.top_p}
    for batch in (1, 64):
        f3 = feeds(v3, batch, model.hidden, True)
        f3["top_p"][:] = args.top_p
        f2 = feeds(v2, batch, 256, False)
        f2["top_p"][:] = args.top_p
        t = time_calls({"v2": (v2, f2), "v3": (v3, f3)}, max(10, args.calls // batch * 4))
        result[f"B{batch}"] = {"v2_us": t["v2"], "v3_us": t["v3"], "v2_notes_per_s": batch / t["v2"] * 1e6,
                               "v3_notes_per_s": batch / t["v3"] * 1e6, "v3_over_v2": t["v3"] / t["v2"]}
        print(f"B={batch:3d}: v2 {t['v2']:7.1f} us/call, v3 {t['v3']:7.1f} us/call = {t['v3'] / t['v2']:.2f} x v2 "
              f"({batch / t['v3'] * 1e6:,.0f} notes/s; v2 {batch / t['v2'] * 1e6:,.0f})")
    print(f"v3 graph: {result['nodes_v3']} nodes: {dict(ops.most_common())}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
