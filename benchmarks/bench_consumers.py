"""Per-note speed of every consumer of one model, one stream, side by side in one run.

The same primer (the bundled seed), the same seed and the model's default sampling; each
consumer generates `--notes` notes after an untimed warm-up, timed by itself (the time of the
generation loop, not of starting a process or loading a model), median of `--repeats` runs:

    Python onnxruntime     mpx's Generator on the ONNX artifact (mpx run's path), 1 and 2 threads
    Python TorchScript     mpx's Generator on music_producter.pt
    C++ TorchScript        examples/libtorch mpx_generate --bench (libtorch, one thread)
    C++ AOTInductor        examples/libtorch mpx_generate_aoti --bench on an AOTInductor package
                           compiled here (`mpx export --format aoti`; ~1 minute)
    Node onnxruntime-node  examples/node/generate.mjs --bench (one thread)
    browser (wasm)         examples/web in headless Chromium: the speed the page reports

A consumer whose tools are missing (cmake, node and `make web-deps`, /usr/bin/chromium) is
reported as skipped with the reason, never silently left out.

    python benchmarks/bench_consumers.py                          # the bundled model
    python benchmarks/bench_consumers.py --notes 256 --repeats 1  # smoke
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

ROOT = common.ROOT
EXAMPLES = ROOT / "examples"
SEED = common.ARTIFACTS / "seed.mid"
RATE = re.compile(r"([0-9][0-9,.]*) notes/s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, default=common.ARTIFACTS,
                   help="folder with model.safetensors, music_producter.onnx and .pt (default: artifacts/)")
    p.add_argument("--notes", type=int, default=2048, help="notes per timed run (default 2048)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per consumer, median (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build-dir", type=Path, default=None, help="reuse this C++ build folder")
    p.add_argument("--skip", nargs="*", default=[], help="consumers to leave out (cpp, aoti, node, browser)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    return p.parse_args(argv)


def median_rate(run: Any, notes: int, repeats: int) -> float:
    run(min(notes, 64))  # warm-up, untimed
    return statistics.median(run(notes) for _ in range(repeats))


# -- Python ---------------------------------------------------------------------------------
def python_rate(model: Path, threads: int, args: argparse.Namespace) -> float:
    from mpx.runtime import load, read_notes
    generator = load(model, threads=threads)
    primer = read_notes(SEED)

    def run(n: int) -> float:
        started = time.perf_counter()
        generator.generate(primer, n, seed=args.seed)
        return n / (time.perf_counter() - started)
    return median_rate(run, args.notes, args.repeats)


# -- programs that print "N notes in S s: R notes/s" ----------------------------------------
def program_rate(command: list[str], args: argparse.Namespace) -> float:
    def run(n: int) -> float:
        done = subprocess.run([*command, "--notes", str(n)], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
        found = RATE.findall(done.stdout + done.stderr)
        if not found:
            raise RuntimeError(f"{' '.join(command)} printed no notes/s: {done.stdout[-300:]}{done.stderr[-300:]}")
        return float(found[-1].replace(",", ""))
    return median_rate(run, args.notes, args.repeats)


def build_cpp(build: Path) -> dict[str, Path]:
    import torch
    if shutil.which("cmake") is None:
        raise LookupError("cmake not found")
    if not (build / "mpx_generate").is_file():
        for cmd in (["cmake", "-S", str(EXAMPLES / "libtorch"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                     f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"], ["cmake", "--build", str(build), "-j2"]):
            subprocess.run(cmd, check=True, capture_output=True, timeout=1800)
    return {"torchscript": build / "mpx_generate", "aoti": build / "mpx_generate_aoti"}


def primer_csv(tmp: Path) -> Path:
    from mpx.runtime import read_notes, write_csv
    return write_csv(read_notes(SEED), tmp / "primer.csv")


def aoti_package(model_dir: Path, tmp: Path) -> Path:
    from mpx.export.api import export_artifacts
    from mpx.export.options import ExportOptions
    export_artifacts(model_dir / "model.safetensors", tmp, ExportOptions(format="aoti"), echo=lambda _: None)
    return tmp / "music_producter.aoti.pt2"


# -- the browser ----------------------------------------------------------------------------
def browser_rate(model: Path, tmp: Path, args: argparse.Namespace) -> float:
    import importlib.util
    if not Path("/usr/bin/chromium").is_file() or not (EXAMPLES / "node_modules" / "playwright-core").is_dir():
        raise LookupError("chromium or playwright-core missing: run make web-deps")
    spec = importlib.util.spec_from_file_location("serve", EXAMPLES / "web" / "serve.py")
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)  # type: ignore[union-attr]
    server = serve.make_server(str(EXAMPLES / "web"), 0, str(model), str(SEED))
    import threading
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        step = {"do": "generate", "notes": args.notes, "seed": str(args.seed)}
        warm = {**step, "notes": 64}
        plan = {"url": f"http://{host}:{port}/", "chromium": "/usr/bin/chromium",
                "steps": [warm, *[step] * args.repeats]}
        (tmp / "plan.json").write_text(json.dumps(plan))
        done = subprocess.run(["node", str(EXAMPLES / "web" / "e2e" / "drive.mjs"), str(tmp / "plan.json")],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"the browser run failed: {done.stderr[-500:]}")
        rates = [s["notes_per_second"] for s in json.loads(done.stdout)["steps"][1:]]
        return statistics.median(rates)
    finally:
        server.shutdown()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = common.start(1)
    onnx, pt = args.model_dir / "music_producter.onnx", args.model_dir / "music_producter.pt"
    rows: list[dict[str, Any]] = []

    def measure(name: str, how: str, rate: Any) -> None:
        try:
            value = rate()
            rows.append({"consumer": name, "runs": how, "notes_per_s": value, "us_per_note": 1e6 / value})
        except (LookupError, RuntimeError, OSError, ImportError, subprocess.CalledProcessError) as exc:
            rows.append({"consumer": name, "runs": how, "skipped": str(exc).splitlines()[0][:120]})
        print(f"{name}: {rows[-1].get('notes_per_s') or rows[-1].get('skipped')}", flush=True)

    with tempfile.TemporaryDirectory(prefix="mpx-consumers-") as tmp_name:
        tmp = Path(tmp_name)
        measure("Python onnxruntime", "mpx Generator, 2 threads", lambda: python_rate(onnx, 2, args))
        measure("Python onnxruntime", "mpx Generator, 1 thread", lambda: python_rate(onnx, 1, args))
        measure("Python TorchScript", "mpx Generator, 1 thread", lambda: python_rate(pt, 1, args))
        csv = primer_csv(tmp)
        flags = ["--seed", str(args.seed), "--bench", "--force"]  # each repeat replaces the last run's output
        build = args.build_dir or tmp / "build"

        def cpp(kind: str, model: Any) -> float:
            programs = build_cpp(build)  # once: a second call finds the programs built
            return program_rate([str(programs[kind]), str(model()), str(csv), str(tmp / f"{kind}.csv"), *flags], args)
        if "cpp" not in args.skip:
            measure("C++ TorchScript", "libtorch, 1 thread", lambda: cpp("torchscript", lambda: pt))
        if "aoti" not in args.skip:
            measure("C++ AOTInductor", "compiled package, 1 thread",
                    lambda: cpp("aoti", lambda: aoti_package(args.model_dir, tmp)))
        if "node" not in args.skip:
            def node() -> float:
                if not shutil.which("node") or not (EXAMPLES / "node_modules" / "onnxruntime-node").is_dir():
                    raise LookupError("node or onnxruntime-node missing: run make web-deps")
                return program_rate(["node", str(EXAMPLES / "node" / "generate.mjs"), str(onnx), str(csv),
                                     str(tmp / "node.csv"), *flags], args)
            measure("Node onnxruntime-node", "1 thread", node)
        if "browser" not in args.skip:
            measure("browser (Chromium)", "onnxruntime-web, wasm, 1 thread", lambda: browser_rate(onnx, tmp, args))
    common.print_table(f"one stream, {args.notes} notes per run (median of {args.repeats}), model {args.model_dir}",
                       ["consumer", "runs", "notes/s", "us/note"],
                       [[r["consumer"], r["runs"], r.get("notes_per_s", "skipped: " + r.get("skipped", "")),
                         r.get("us_per_note")] for r in rows])
    common.write_json(args.json, {"machine": info, "options": vars(args), "rows": rows})


if __name__ == "__main__":
    sys.exit(main())
