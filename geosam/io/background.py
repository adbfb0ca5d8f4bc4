"""Write files on a few threads while the caller reads and prepares the next ones.

Tiling is a loop of read, stretch, compress and write. GDAL releases Python's lock while it
compresses and writes, so handing each chip file to a small pool lets compression run on the
cores reading leaves idle. The pool holds a bounded number of pending writes (memory stays
flat with the scene size), and an error from any write (a full disk) is raised in the
caller's thread at the next submission or when the block ends.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

WRITE_THREADS = 2


class BackgroundWrites:
    """`with BackgroundWrites() as writes: writes.submit(write_file, path, data)`.

    Args:
        threads: writer threads (default: `WRITE_THREADS`, at most the machine's cores).
        depth: pending writes allowed per thread before `submit` waits for the oldest.
    """

    def __init__(self, threads: int | None = None, depth: int = 2) -> None:
        count = threads or max(1, min(WRITE_THREADS, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(count, thread_name_prefix="geosam-write")
        self._pending: deque[Future[Any]] = deque()
        self._limit = count * depth

    def submit(self, write: Callable[..., Any], *args: Any) -> None:
        """Queue `write(*args)`; waits (and raises its error) if too many writes are pending."""
        self._pending.append(self._pool.submit(write, *args))
        while len(self._pending) > self._limit:
            self._pending.popleft().result()

    def wait(self) -> None:
        """Wait for every queued write; raise the first error."""
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> BackgroundWrites:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            for future in self._pending:  # after an error: start nothing new
                future.cancel()
            self._pool.shutdown(wait=True)
