"""The server's metrics in Prometheus' text exposition format (version 0.0.4), without a
client library: counters, gauges and histograms with fixed buckets."""
from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"'.replace("\n", " ") for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self, name: str) -> list[str]:
        out, total = [], 0
        for bound, count in zip((*self.buckets, math.inf), self.counts):
            total += count
            out.append(f'{name}_bucket{{le="{_number(bound)}"}} {total}')
        out += [f"{name}_sum {_number(self.sum)}", f"{name}_count {total}"]
        return out


class Metrics:
    """Everything /metrics shows. Updated from the event loop only (no locks needed)."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.help: dict[str, tuple[str, str]] = {}
        self.gauges: dict[str, Callable[[], float]] = {}
        self.histograms: dict[str, Histogram] = {}
        self._recent: deque[tuple[float, int]] = deque()  # (time, notes) of the last seconds
        for name, text in (("mpx_notes_total", "notes generated"),
                           ("mpx_graph_calls_total", "graph calls (primes and batched steps)"),
                           ("mpx_requests_total", "requests answered, by endpoint and status"),
                           ("mpx_streams_total", "streams ended, by how they ended")):
            self.help[name] = ("counter", text)
        for name, text, buckets in (
                ("mpx_batch_rows", "rows per batched graph call (before padding)", ROW_BUCKETS),
                ("mpx_queue_wait_seconds", "from a request's arrival to its first graph call", LATENCY_BUCKETS),
                ("mpx_time_to_first_note_seconds", "from a request's arrival to its first note", LATENCY_BUCKETS),
                ("mpx_step_seconds", "one step of the batch (one graph call; rows with appended notes pending: one more)", LATENCY_BUCKETS),
                ("mpx_request_seconds", "whole requests, arrival to last note", LATENCY_BUCKETS)):
            self.help[name] = ("histogram", text)
            self.histograms[name] = Histogram(buckets)

    def gauge(self, name: str, text: str, read: Callable[[], float]) -> None:
        self.help[name] = ("gauge", text)
        self.gauges[name] = read

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0) + value

    def observe(self, name: str, value: float) -> None:
        self.histograms[name].observe(value)

    def notes(self, count: int) -> None:
        self.inc("mpx_notes_total", count)
        now = time.monotonic()
        self._recent.append((now, count))
        while self._recent and self._recent[0][0] < now - 10:
            self._recent.popleft()

    def notes_per_second(self) -> float:
        """Notes generated per second over the last 10 s."""
        now = time.monotonic()
        return sum(n for t, n in self._recent if t >= now - 10) / 10.0

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, text) in self.help.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            if kind == "counter":
                found = [(labels, v) for (n, labels), v in self.counters.items() if n == name]
                for labels, value in found or [((), 0)]:
                    lines.append(f"{name}{_labels(dict(labels))} {_number(value)}")
            elif kind == "gauge":
                lines.append(f"{name} {_number(self.gauges[name]())}")
            else:
                lines += self.histograms[name].lines(name)
        return "\n".join(lines) + "\n"
