"""What every worker process of a pool runs first."""

from __future__ import annotations

import signal


def ignore_interrupts(*_: object) -> None:
    """Leave Ctrl-C to the main process, which stops the pool and prints the one line (a
    terminal sends SIGINT to every process of its group, workers included)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
