"""A child process that ends with its parent, even when the parent is killed with kill -9.

Linux's `prctl(PR_SET_PDEATHSIG)`: the kernel sends the child SIGTERM when the thread that
started it ends, so start children from the main thread. The same mechanism for a child
that is a program (`subprocess.Popen(preexec_fn=...)`, dev mode's nats-server) and for one
that is Python (a `multiprocessing` worker arms it first thing: the API's processes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def tie_to(parent: int) -> Callable[[], None]:
    """A function that, run in a child of `parent`, asks for SIGTERM when `parent` dies.

    It exits the child at once when `parent` is gone already (it died before the request
    took effect). libc is loaded here, in the parent: the function is fit for `preexec_fn`,
    which runs between fork and exec, where loading a library is not safe.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm
