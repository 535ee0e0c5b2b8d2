"""The errors a user can cause, Ctrl-C and SIGTERM, and the optional packages a command may need: light enough for
the CLI to import.

Every ConfigError and CheckpointError becomes one line on stderr and exit code 2 in the CLI. They live here, away
from JAX and the numeric libraries, so that `cartpole-dqn --help` and a refused flag answer at once, and so that
a missing optional package is named before any frame is played, any folder created or any training started.
"""

from __future__ import annotations

import importlib.util
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class ConfigError(ValueError):
    """A bad value from the user; the CLI prints its message as one line and exits with code 2."""


class CheckpointError(ValueError):
    """A model or checkpoint that cannot be loaded; the CLI prints it as one line with exit code 2."""


class OutputError(OSError):
    """A run's files could not be written (a full disk, a folder made read-only); the CLI prints it as one line
    with exit code 2. What could be saved was: the message says where the last checkpoint is."""


def installed(module: str) -> bool:
    """Whether the top-level `module` can be imported, found without importing it (so the check costs nothing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module left half-imported, or made unimportable on purpose
        return False


def missing(module: str, extra: str, what: str) -> ConfigError:
    """The one-line error for `what` (say "an MP4") lacking `module`, naming the extra that installs it."""
    return ConfigError(f"{what} needs {module}, which is not installed: pip install 'cartpole-dqn[{extra}]'")


def require(module: str, extra: str, what: str) -> None:
    """Refuse with `missing`'s message unless `module` is installed; call it before any work is done."""
    if not installed(module):
        raise missing(module, extra, what)


class Stop:
    """Turns the first Ctrl-C or SIGTERM into a request (`requested`) that the code answers when it can (training:
    after the current chunk); a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def stop_on_signals() -> Iterator[Stop]:
    """Within: Ctrl-C and SIGTERM are `Stop` requests (in the main thread, where Python runs signal handlers)."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
