"""Doing something when the process is asked to stop, before the ASGI server does its part.

granian waits for open responses before it runs the lifespan's shutdown, so a stream that
never ends would keep the process alive: the event streams must hear of SIGTERM/SIGINT
themselves.
"""

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ventryx.stop_signals")


def on_stop_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """Calls ``stop`` on the event loop when SIGTERM or SIGINT arrives, then whatever
    handled the signal before (the ASGI server's own, through the loop's wakeup fd or as a
    Python handler); returns how to put the previous handlers back."""
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def on_signal(signum: int, frame: Any) -> None:
        loop.call_soon_threadsafe(stop)
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)

    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    except ValueError:  # only the main thread may set handlers
        log.warning("not the main thread: open event streams will hold up stopping")

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore
