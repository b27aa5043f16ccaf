"""A loop the runner keeps going in a daemon thread while a measurement runs (samplers, watchers)."""
from __future__ import annotations

import threading


class Background:
    """Context manager: run self._loop() in a daemon thread for the block; _loop ends when self._stop is set."""

    thread_name = "background"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)  # bounded: each loop waits on _stop at least every interval

    def _loop(self) -> None:
        raise NotImplementedError
