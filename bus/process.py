"""Child processes that die with citybus: the embedded nats-server, a cluster's nodes, a certify run.

A child started in its own session (so a terminal's Ctrl-C reaches citybus, which then stops it in
order) no longer gets the terminal's signals; :func:`parent_death_signal` makes Linux send it
SIGTERM when citybus itself dies, even by SIGKILL, so no broker is left running behind a crash.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["parent_death_signal"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes Linux send the child SIGTERM when citybus dies, else ``None``.

    libc is loaded here, in the parent: loading a library between fork and exec can deadlock. The
    signal follows the *thread* that forked, which is the event loop's thread.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    option = ctypes.c_int(_PR_SET_PDEATHSIG)
    sig = ctypes.c_ulong(signal.SIGTERM)

    def set_parent_death_signal() -> None:
        prctl(option, sig)
        if os.getppid() != parent:  # citybus died between fork and prctl: nobody will stop us
            os.kill(os.getpid(), signal.SIGTERM)

    return set_parent_death_signal
