"""Serving settings: the `[serving]` table of `mloncall.toml`; `MLONCALL_SERVING_<KEY>` overrides a key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mloncall.core.config import Settings, positive_numbers
from mloncall.core.errors import InvalidInput

#: The most ONNX Runtime threads a predictor may ask for: 5000 made loading a model spin for minutes.
MAX_ONNX_THREADS = 64


@dataclass(frozen=True)
class ServingConfig:
    """Limits and timings of the inference app."""

    #: Larger request bodies get 413.
    max_body_bytes: int = 1 << 20
    #: Rows per inference request; routing rows override this per model (more get 400, `too_many_rows`).
    default_max_rows: int = 1000
    #: Requests one worker holds at once (reading a body, waiting for a model to load or for the token
    #: check); one more gets a quick 503 with `Retry-After` instead of joining a growing queue.
    max_inflight: int = 256
    #: An inference request not answered within this many seconds gets 504 (waiting on a slow body, a model
    #: load or the token check; scoring itself runs to its end once started).
    request_timeout_seconds: float = 10.0
    #: What a 503 for overload tells the client to wait before trying again (`Retry-After`, whole seconds).
    retry_after_seconds: int = 1
    #: How often each worker polls the routing table; a change is applied within about this plus a model load.
    refresh_seconds: float = 0.3
    #: The prediction log is written at least this often ...
    log_flush_seconds: float = 1.0
    #: ... or as soon as this many rows are buffered.
    log_flush_rows: int = 20_000
    #: A version that failed to load (altered file, ...) is tried again after this long.
    retry_failed_seconds: float = 10.0
    #: Versions asked for explicitly (`/versions/{v}`) kept loaded besides stable and canary.
    explicit_cache_size: int = 4
    #: ONNX Runtime intra-op threads per predictor (1 suits many small requests over several workers).
    onnx_threads: int = 1

    def __post_init__(self) -> None:
        if self.onnx_threads > MAX_ONNX_THREADS:
            raise InvalidInput(
                f"serving setting onnx_threads={self.onnx_threads} is more than {MAX_ONNX_THREADS}: "
                "threads past the cores only contend (1 suits many small requests over several workers)"
            )

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> ServingConfig:
        """The `[serving]` table with `MLONCALL_SERVING_*` overrides."""
        return positive_numbers(
            cls, "serving", settings, env, read_elsewhere={"require_token", "token_cache_seconds"}
        )
