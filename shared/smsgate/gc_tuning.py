"""Garbage-collector settings for a long-running service, applied once it has started.

A service's start-up objects (modules, config, app, one worker per port) live as long as
the process; left in the collector's care, every full pass walks them all and stalls
everything in flight (10-25 ms under load in the API). What a request or a message
allocates is freed by reference counting, so young passes at the default threshold (700)
mostly find nothing.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 5_000


def settle() -> None:
    """Freeze what exists now out of the collector's passes, and make young passes rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
