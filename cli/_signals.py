"""SIGTERM and SIGINT for the long commands: stop cleanly, say so in one line, exit 128 + the signal.

A farm manager cancels a task with SIGTERM (then SIGKILL after a grace period); a person presses Ctrl-C.
Either way the command raises :class:`~daflow_vfx.errors.Interrupted` in the main thread, so the job
unwinds as it would from any error: the frame being written lands whole, queued frames are dropped, every
temp file is removed by its ``atomic_path`` and the CLI prints one ``Error:`` line. The handlers are
installed only while a command runs (never on import) and the previous ones are put back afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from daflow_vfx.errors import Interrupted

__all__ = ["stops_cleanly_on_signals"]

F = TypeVar("F", bound=Callable[..., Any])

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def _signals_raise_interrupted() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can take signals (a host adapter may run a command in a thread)
        return
    fired = False

    def handler(signum: int, frame: object) -> None:
        nonlocal fired
        if fired:
            return  # the cleanup of the first signal is under way; a second must not cut it short
        fired = True
        name = signal.Signals(signum).name
        raise Interrupted(f"interrupted by {name}; stopped after cleaning up: files already finished are "
                          "complete and no partial file was left", signal_number=signum)

    previous = {number: signal.signal(number, handler) for number in _SIGNALS}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def stops_cleanly_on_signals(func: F) -> F:
    """Decorate a long command: while it runs, SIGTERM and SIGINT raise
    :class:`~daflow_vfx.errors.Interrupted` (see the module docstring)."""

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        with _signals_raise_interrupted():
            return func(*args, **kwargs)

    return command  # type: ignore[return-value]
