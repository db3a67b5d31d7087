"""ServeOptions: every option of the server, checked in one place."""
from __future__ import annotations

import dataclasses
import ipaddress
import math

from ..errors import OptionsError

LOOPBACK_NAMES = ("localhost",)


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """What `mpx serve` and `create_app` take. Limits protect the process: a request beyond
    them is answered 429 (come back later) or 413/422 (never), not queued without bound."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None            # when set: every /v1 request needs "Authorization: Bearer TOKEN"
    threads: int = 1                    # onnxruntime intra-op threads (1: the graph shares 2 cores with the server)
    max_streams: int = 256              # rows generating at once (every stream, session and request)
    max_queue: int = 256                # requests waiting for a row; beyond: 429 with Retry-After
    max_batch: int = 256                # 1 = no batching (every stream its own calls, as `mpx run`); more: one batch
    row_quantum: int = 4                # batched calls are padded to a multiple of this many rows (see batcher)
    max_notes: int = 100_000            # notes per request (and per session `generate`)
    max_primer_notes: int = 100_000     # notes a request may send as its seed (only the last seq_len prime)
    max_body_bytes: int = 4 << 20       # request body (JSON, MIDI, CSV)
    buffer_notes: int = 256             # notes made ahead of a slow reader before its row pauses
    flush_interval: float = 0.02        # a stream writes at most every this many seconds (the first note at once)
    max_writes: int = 3200              # writes per second over all streams: with more streams than
                                        # max_writes * flush_interval, each writes less often (HTTP's cost per write)
    prime_budget: float = 0.01          # seconds of priming between two steps of the batch
    stall_timeout: float = 60.0         # a stream whose reader takes nothing for this long is ended
    session_ttl: float = 300.0          # an interactive session idle this long is closed
    max_sessions: int = 256
    drain_timeout: float = 60.0         # SIGTERM: seconds the streams in flight get to finish
    cors_origins: tuple[str, ...] = ()  # web pages (origins) allowed to call, beyond this machine's own

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        _integer("--port", self.port, 0, 65535)
        _integer("--threads", self.threads, 1, 256)
        _integer("--max-streams", self.max_streams, 1, 100_000)
        _integer("--max-queue", self.max_queue, 0, 1_000_000)
        _integer("--max-batch", self.max_batch, 1, 100_000)
        _integer("--row-quantum", self.row_quantum, 1, 1024)
        _integer("--max-notes", self.max_notes, 1, 10_000_000)
        _integer("--max-primer-notes", self.max_primer_notes, 1, 10_000_000)
        _integer("--max-body-bytes", self.max_body_bytes, 1024, 1 << 30)
        _integer("--buffer-notes", self.buffer_notes, 1, 1_000_000)
        _integer("--max-writes", self.max_writes, 1, 10_000_000)
        _integer("--max-sessions", self.max_sessions, 0, 100_000)
        for flag, value, low in (("--flush-interval", self.flush_interval, 0.0),
                                 ("--prime-budget", self.prime_budget, 0.0),
                                 ("--stall-timeout", self.stall_timeout, 0.1),
                                 ("--session-ttl", self.session_ttl, 0.1),
                                 ("--drain-timeout", self.drain_timeout, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= 86_400:
                raise OptionsError(f"{flag} must be a number of seconds {low:g}..86400, got {value!r}")
        if not isinstance(self.host, str) or not self.host.strip():
            raise OptionsError(f"--host must be an address or a host name, got {self.host!r}")
        if not isinstance(self.cors_origins, (tuple, list)) or not all(
                isinstance(o, str) and o.startswith(("http://", "https://")) for o in self.cors_origins):
            raise OptionsError(f"--cors-origin takes origins like https://example.org, got {self.cors_origins!r}")
        if self.token is not None and (not isinstance(self.token, str) or len(self.token) < 8
                                       or not self.token.isprintable() or " " in self.token):
            raise OptionsError("--token must be at least 8 printable characters without spaces")

    @property
    def loopback(self) -> bool:
        """True when only this machine can reach the server."""
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def exposure_warning(self) -> str | None:
        """One line when the server is reachable from other machines without a token."""
        if self.loopback or self.token:
            return None
        return (f"serving on {self.host}:{self.port} without --token: anyone who can reach this "
                "address can generate (and use this machine's CPU); pass --token or bind 127.0.0.1")


def _integer(flag: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise OptionsError(f"{flag} must be an integer {low:,}..{high:,}, got {value!r}")
