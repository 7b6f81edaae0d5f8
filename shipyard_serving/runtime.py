"""Two corrections to how a BentoML 1.4 worker runs, measured in docs/performance.md.

1. BentoML's TimeoutMiddleware never cancels its per-request timer, which keeps every request's
   objects alive for the whole traffic timeout: 90-200 ms garbage-collection stalls every ~2 s at
   1 500 requests/s (the p99 of 150 ms a single client saw). shipyard's own (timeout.py, the one
   its server uses too) takes its place; a request that overruns still gets a 504 in the error
   contract's shape.
2. `gc.freeze()` once the model is loaded moves the start-up heap (imports, the model: ~150 000
   objects) out of the collector's reach, so the full collections that remain are short.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger("shipyard.runtime")


def install() -> None:
    """Puts shipyard's TimeoutMiddleware (timeout.py) where BentoML's worker takes its own, before
    the worker builds its app (idempotent)."""
    from .compat import traffic_module
    from .timeout import TimeoutMiddleware

    traffic_module().TimeoutMiddleware = TimeoutMiddleware


def freeze_startup_heap() -> None:
    """Call once the worker has loaded everything it keeps (the model): see the module's note."""
    gc.collect()
    gc.freeze()
    logger.info("start-up heap frozen: %d objects out of the collector's reach", gc.get_freeze_count())
