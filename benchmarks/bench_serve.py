"""Load benchmark of `mpx serve`, with a real HTTP client (httpx on asyncio), side by side in
one run: the batched server, the same server without batching (`--max-batch 1`: every stream
its own graph call), and the in-process batched Generator (no HTTP: the ceiling).

    python benchmarks/bench_serve.py --clients 1 8 64 256 --notes 512 --soak 30 --json benchmarks/results/serve.json

For each number of concurrent clients, every client streams `--notes` notes (NDJSON) from the
bundled seed with its own seed; measured: aggregate notes/s (all notes / the wall time of the
round), time to first note (request sent -> first note received; p50, p99), the gap between
two arrivals of notes on one stream (p99), the server's peak RSS above its idle RSS per stream,
and its RSS after the round. Every stream is checked: all notes, indices in order, none lost
or duplicated; the batched streams' notes are compared with the unbatched server's (which
calls the graph at B = 1, as `mpx run` does).

`--mixed`: the clients take turns over four samplings and five sets of controls (none, a
density, a key, dynamics and register with a key, an articulation): contract v3 draws every row
with its own in one call, so the batch is the same size as without; the ceiling gets the same
mix (GenerationOptions.takes).

`--soak S`: for S seconds, clients that disconnect mid-stream, send garbage (bytes that are no
HTTP, bad JSON, bad fields) or read very slowly, beside normal ones; then the server must be up,
every stream freed (mpx_active_streams 0, mpx_buffered_notes 0) and its log free of tracebacks.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402

MIX_SAMPLING = [{}, {"temperature": 0.7, "top_p": 0.9}, {"temperature": 0.0, "top_p": 1.0},
                {"temperature": [1.0, 0.9, 0.9, 1.0], "top_p": [0.95, 0.9, 0.9, 1.0]}]
MIX_CONTROLS = [{}, {"controls": {"density": 9.0}}, {"key": "D minor"},
                {"controls": {"velocity_mean": 40, "pitch_mean": 72}, "key": "Bb"}, {"controls": {"duration_median": 0.3}}]


def client_settings(i: int, mixed: bool) -> dict[str, Any]:
    """Client i's sampling and controls (none unless --mixed)."""
    return {**MIX_SAMPLING[i % len(MIX_SAMPLING)], **MIX_CONTROLS[i % len(MIX_CONTROLS)]} if mixed else {}


TARGETS = {"speedup_vs_unbatched": 5.0, "share_of_ceiling": 0.5, "ttfn_p99_s": 0.25, "gap_p99_s": 0.05}


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Server:
    """`mpx serve` in its own process on a free port."""

    def __init__(self, *args: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-serve-{self.port}.log"
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "mpx", "serve", "--port", str(self.port), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        import httpx
        for _ in range(300):
            if self.proc.poll() is not None:
                raise SystemExit(f"mpx serve exited with {self.proc.returncode}: {self.log_path}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    def metric(self, name: str) -> float:
        import httpx
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return float("nan")

    def stop(self) -> tuple[int, str]:
        self.proc.terminate()
        code = self.proc.wait(timeout=120)
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        return code, text


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> "RssSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()


async def one_stream(client: Any, seed: int, notes: int, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stream one request; its arrival times and notes, checked for order and completeness."""
    sent = time.perf_counter()
    first, arrivals, parts, expected, problems = None, [], [], 0, []
    body = {"notes": notes, "seed": seed, "stream": True, **(settings or {})}
    try:
        async with client.stream("POST", "/v1/generate", json=body) as response:
            if response.status_code != 200:
                return {"error": f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"}
            ended = False
            async for line in response.aiter_lines():
                if not line:
                    continue
                now = time.perf_counter()
                event = json.loads(line)
                if event["event"] == "notes":
                    if event["index"] != expected:
                        problems.append(f"index {event['index']}, expected {expected}")
                    expected += len(event["notes"])
                    parts.append(np.asarray(event["notes"], np.float32))
                    arrivals.append(now)
                    first = first or now
                elif event["event"] == "end":
                    ended = event["count"] == notes
                elif event["event"] == "error":
                    problems.append(event["error"])
    except Exception as exc:  # a lost connection is a result here, not a crash of the benchmark
        return {"error": f"{type(exc).__name__}: {exc}"}
    if expected != notes or not ended:
        problems.append(f"{expected} notes of {notes}" + ("" if ended else ", no end event"))
    gaps = list(np.diff(arrivals)) if len(arrivals) > 1 else []
    return {"ttfn": (first - sent) if first else None, "gaps": gaps, "notes": np.concatenate(parts) if parts else None,
            "error": "; ".join(problems) or None}


async def round_of(url: str, clients: int, notes: int, seed0: int, mixed: bool = False) -> tuple[list[dict], float]:
    import httpx
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(600), limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, seed0 + i, notes, client_settings(i, mixed))
                                         for i in range(clients)))
        return results, time.perf_counter() - started


def measure_server(server: Server, clients: int, notes: int, label: str, mixed: bool = False) -> tuple[dict[str, Any], list]:
    asyncio.run(round_of(server.url, 1, 8, 1))  # warm: onnxruntime's first calls of each shape allocate
    idle = rss_mb(server.proc.pid)
    with RssSampler(server.proc.pid) as rss:
        results, wall = asyncio.run(round_of(server.url, clients, notes, 10_000, mixed))
    time.sleep(0.5)
    errors = [r["error"] for r in results if r.get("error")]
    ttfn = [r["ttfn"] for r in results if r.get("ttfn") is not None]
    gaps = [g for r in results for g in r.get("gaps", [])]
    done = sum(len(r["notes"]) for r in results if r.get("notes") is not None)
    row = {"server": label, "clients": clients, "notes_per_s": done / wall, "wall_s": wall,
           "ttfn_p50_s": percentile(ttfn, 50), "ttfn_p99_s": percentile(ttfn, 99), "gap_p99_s": percentile(gaps, 99),
           "gap_max_s": max(gaps) if gaps else None, "rss_idle_mb": idle, "rss_peak_mb": rss.peak,
           "rss_after_mb": rss_mb(server.proc.pid), "mb_per_stream": (rss.peak - idle) / clients,
           "errors": len(errors), "first_error": errors[0] if errors else None,
           "active_after": server.metric("mpx_active_streams"), "buffered_after": server.metric("mpx_buffered_notes")}
    return row, results


def measure_ceiling(clients: int, notes: int, mixed: bool = False) -> dict[str, Any]:
    from mpx.runtime import GenerationOptions, Take, load, read_notes
    gen = load(threads=1)
    primer = read_notes(ROOT / "artifacts" / "seed.mid")
    takes = None
    if mixed:
        def take(settings: dict[str, Any]) -> Take:
            t, p = settings.get("temperature"), settings.get("top_p")
            return Take(temperature=tuple(t) if isinstance(t, list) else t, top_p=tuple(p) if isinstance(p, list) else p,
                        controls=settings.get("controls"), key=settings.get("key"))
        takes = tuple(take(client_settings(i, True)) for i in range(clients))
    options = GenerationOptions(num_outputs=clients, seed=0, takes=takes)
    gen.generate(primer, 8, options)
    walls = []
    for _ in range(3):  # short: the median of three
        started = time.perf_counter()
        gen.generate(primer, notes, options)
        walls.append(time.perf_counter() - started)
    wall = statistics.median(walls)
    return {"server": "in-process Generator (ceiling)", "clients": clients, "notes_per_s": clients * notes / wall, "wall_s": wall}


# -- the soak -------------------------------------------------------------------------------------

async def soak(url: str, seconds: float, notes: int) -> dict[str, Any]:
    import httpx
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
    rng = random.Random(0)
    counts = {"normal": 0, "normal_ok": 0, "disconnect": 0, "garbage": 0, "bad_request_4xx": 0, "slow": 0}
    deadline = time.monotonic() + seconds

    async def normal(client: Any) -> None:
        counts["normal"] += 1
        result = await one_stream(client, rng.randrange(2**64), notes)
        counts["normal_ok"] += result.get("error") is None

    async def disconnect(client: Any) -> None:
        counts["disconnect"] += 1
        async with client.stream("POST", "/v1/generate", json={"notes": 100_000, "seed": 1, "stream": True}) as response:
            lines = response.aiter_lines()
            for _ in range(rng.randrange(1, 5)):
                await lines.__anext__()

    async def garbage(client: Any) -> None:
        counts["garbage"] += 1
        kind = rng.randrange(3)
        if kind == 0:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) + b"\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()
            return
        body = b"{\"notes\": [" if kind == 1 else json.dumps({"notes": -3, "top_p": "x", "primer": [[999]]}).encode()
        response = await client.post("/v1/generate", content=body, headers={"content-type": "application/json"})
        counts["bad_request_4xx"] += 400 <= response.status_code < 500

    async def slow() -> None:
        counts["slow"] += 1
        reader, writer = await asyncio.open_connection(host, port, limit=1024)
        body = json.dumps({"notes": 5000, "seed": 3, "stream": True}).encode()
        writer.write(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        for _ in range(20):
            await reader.read(64)
            await asyncio.sleep(0.1)
        writer.close()

    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(120)) as client:
        tasks: set[asyncio.Task] = set()
        while time.monotonic() < deadline:
            if len(tasks) < 32:
                kind = rng.choice(["normal", "normal", "disconnect", "garbage", "slow"])
                coro = {"normal": normal, "disconnect": disconnect, "garbage": garbage}.get(kind)
                task = asyncio.ensure_future(coro(client) if coro else slow())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.02)
        await asyncio.gather(*tasks, return_exceptions=True)
    return counts


def run_soak(seconds: float, notes: int) -> dict[str, Any]:
    server = Server("--max-notes", "100000")
    idle = rss_mb(server.proc.pid)
    counts = asyncio.run(soak(server.url, seconds, notes))
    for _ in range(100):  # rows of closed sockets leave at the next step
        if server.metric("mpx_active_streams") == 0:
            break
        time.sleep(0.1)
    import httpx
    alive = httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    result = {"seconds": seconds, **counts, "server_up": alive, "active_after": server.metric("mpx_active_streams"),
              "buffered_after": server.metric("mpx_buffered_notes"), "rss_idle_mb": idle, "rss_after_mb": rss_mb(server.proc.pid)}
    code, log = server.stop()
    result.update(exit_code=code, tracebacks=log.count("Traceback"), log_errors=sum("ERROR" in line for line in log.splitlines()))
    return result


# -- rounding: batched rows against one call per note at B = 1 ----------------------------------

ROUNDING_SETTINGS = {"model default": (None, None, None), "t 0.7, p 0.9": (0.7, 0.9, None),
                     "greedy": (0.0, 1.0, None),
                     "t 1,0.9,0.9,1, p 0.95,0.9,0.9,1": ((1.0, 0.9, 0.9, 1.0), (0.95, 0.9, 0.9, 1.0), None),
                     "density 9, key D minor": (None, None, {"density": 9.0, "key": "D minor"})}


def rounding(streams: int, notes: int) -> dict[str, Any]:
    """For each setting: `streams` rows started and stepped as the server does (the primer's
    head at B = 1, then every note in the padded batch) against the same streams as `mpx run`
    makes them (the whole primer in one call, then one call per note, all at B = 1): how many
    steps leave a row's state with other bits, and how many streams draw a different note (and
    where, first)."""
    from mpx.runtime import GenerationOptions, load, read_notes
    from mpx.runtime.backends import zero_state
    from mpx.runtime.rng import uniforms
    from mpx.runtime.serve import rows as rowops
    from mpx.runtime.serve.padding import PaddedBackend
    from mpx.runtime.spec import Sampling
    gen = load(threads=1)
    backend, spec = gen.backend, gen.spec
    primer = read_notes(ROOT / "artifacts" / "seed.mid")[-spec.seq_len:]
    out = {}
    for name, (t, p, asked) in ROUNDING_SETTINGS.items():
        sampling = Sampling(t if t is not None else spec.sampling.temperature, p if p is not None else spec.sampling.top_p)
        asked = dict(asked or {})
        requested = GenerationOptions(key=asked.pop("key", None), controls=asked).requested_controls()
        seeds = [10_000 + i for i in range(streams)]
        padded, heads = PaddedBackend(backend, 4), rowops.PrimerStates()
        listeners = [rowops.Listener(s, sampling, primer, requested=requested) for s in seeds]
        for listener in listeners:
            listener.start(padded, backend, heads)
        batch = rowops.Batch(padded)
        batch.join(listeners)
        got, states = np.empty((streams, notes, 4), np.float32), []
        for n in range(notes):
            by_id = batch.step()
            got[:, n] = [by_id[listener.id] for listener in listeners]
            h = batch.session.state[0]
            where = {row: i for i, row in enumerate(batch.session.ids.tolist())}
            states.append([h[:, where[listener.id]:where[listener.id] + 1] for listener in listeners])
        tt, pp = np.array([sampling.temperature], np.float32), np.array([sampling.top_p], np.float32)
        controls, drawn = listeners[0].controls[None], -np.ones((1, 4), np.float32)
        state_differs, flips = 0, []
        for i, seed in enumerate(seeds):
            h, c = zero_state(spec, 1)
            x = primer[None]
            u = uniforms(seed, 1, 0, notes)
            for n in range(notes):
                o = backend.call(x, h, c, u[n], tt, pp, controls, drawn)
                h, c, x = o.hn, o.cn, o.next_note[:, None]
                state_differs += not np.array_equal(h[:, 0], states[n][i][:, 0])
                if not np.array_equal(o.next_note[0], got[i, n]):
                    flips.append({"seed": seed, "note": n, "b1": o.next_note[0].tolist(), "batched": got[i, n].tolist()})
                    break
        out[name] = {"streams": streams, "notes": notes, "steps_with_other_state_bits": state_differs,
                     "steps_compared": streams * notes, "streams_with_a_different_note": len(flips), "first_differences": flips[:5]}
        print(f"rounding, {name}: {len(flips)} of {streams} streams draw another note within {notes} "
              f"({state_differs} of {streams * notes} steps leave other state bits)", flush=True)
    return out


# -- the run ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--notes", type=int, default=512)
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of the soak (0: none)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every case, taken in turns; medians reported")
    parser.add_argument("--rounding", type=int, nargs=2, metavar=("STREAMS", "NOTES"),
                        help="only measure batched rows against B = 1 calls (bits and notes)")
    parser.add_argument("--mixed", action="store_true", help="clients with mixed sampling and controls")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.rounding:
        result = {"rounding": rounding(*args.rounding), "load": os.getloadavg()}
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1) + "\n")
        return result
    load_before = os.getloadavg()
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    flips, streams_compared = 0, 0
    batched, unbatched = Server(), Server("--max-batch", "1")
    try:
        for repeat in range(args.repeat):
            for clients in args.clients:
                b_row, b_results = measure_server(batched, clients, args.notes, "mpx serve (batched)", args.mixed)
                u_row, u_results = measure_server(unbatched, clients, args.notes, "mpx serve --max-batch 1", args.mixed)
                c_row = measure_ceiling(clients, args.notes, args.mixed)
                for b, u in zip(b_results, u_results):
                    if b.get("notes") is not None and u.get("notes") is not None:
                        streams_compared += 1
                        flips += not np.array_equal(b["notes"], u["notes"])
                b_row["x_unbatched"] = b_row["notes_per_s"] / u_row["notes_per_s"]
                b_row["share_of_ceiling"] = b_row["notes_per_s"] / c_row["notes_per_s"]
                for row in (b_row, u_row, c_row):
                    row["repeat"] = repeat
                    runs.setdefault((row["server"], clients), []).append(row)
                    print_row(row)
        # the largest round once more: the server's memory after two rounds is at a plateau, not growing
        plateau, _ = measure_server(batched, max(args.clients), args.notes, "mpx serve (batched)", args.mixed)
    finally:
        codes = [batched.stop()[0], unbatched.stop()[0]]
    rows = [median_row(group) for group in runs.values()]
    print(f"medians of {args.repeat} rounds:")
    for row in rows:
        print_row(row)
    result: dict[str, Any] = {
        "rows": rows, "runs": [r for group in runs.values() for r in group], "repeat": args.repeat, "mixed": args.mixed,
        "rss_after_another_round_mb": plateau["rss_after_mb"], "notes": args.notes, "targets": TARGETS, "server_exit_codes": codes,
        "batched_vs_unbatched_streams_compared": streams_compared, "batched_vs_unbatched_streams_differing": flips,
        "load_before": load_before, "load_after": os.getloadavg(), "cpus": os.cpu_count(),
        "python": platform.python_version()}
    print(f"streams whose batched notes differ from the unbatched (B = 1) server's: {flips} of {streams_compared}")
    if args.soak:
        result["soak"] = run_soak(args.soak, min(args.notes, 256))
        print("soak:", json.dumps(result["soak"]))
    print(f"load average before {load_before[0]:.1f}, after {result['load_after'][0]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return result


def median_row(group: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(group[0])
    for key, value in group[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("clients", "repeat"):
            values = [g[key] for g in group if g.get(key) is not None]
            out[key] = statistics.median(values) if values else None
    out["errors"] = sum(g.get("errors", 0) for g in group) if "errors" in out else None
    out.pop("repeat", None)
    return {k: v for k, v in out.items() if v is not None or k == "first_error"}


def _fmt(value: Any, scale: float = 1.0, digits: int = 0) -> str:
    return "-" if value is None else f"{value * scale:,.{digits}f}"


def print_row(row: dict[str, Any]) -> None:
    print(f"{row['server']:<34} clients {row['clients']:>4}: {_fmt(row['notes_per_s']):>8} notes/s"
          + (f", TTFN p50 {_fmt(row.get('ttfn_p50_s'), 1000)} ms p99 {_fmt(row.get('ttfn_p99_s'), 1000)} ms"
             f", gap p99 {_fmt(row.get('gap_p99_s'), 1000, 1)} ms, {_fmt(row.get('mb_per_stream'), 1, 2)} MB/stream"
             f", RSS {_fmt(row.get('rss_idle_mb'))} -> peak {_fmt(row.get('rss_peak_mb'))} -> after {_fmt(row.get('rss_after_mb'))} MB"
             f", errors {row.get('errors')}" if "ttfn_p50_s" in row else "")
          + (f"  [x{row['x_unbatched']:.1f} unbatched, {row['share_of_ceiling']:.0%} of ceiling]" if "x_unbatched" in row else ""),
          flush=True)


if __name__ == "__main__":
    main()
