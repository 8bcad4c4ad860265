"""Read ahead in a thread: a volume's next blocks are decompressed while the caller counts the current one.

zlib and zstd release the GIL while they decompress, so one reader thread per volume runs beside the
caller's numpy work instead of after it. At most `depth` blocks wait in the queue (memory stays bounded);
a reader's exception is raised in the caller, at the block where it happened; a caller that stops early
stops the thread.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def read_ahead(blocks: Iterator[T], depth: int = 2) -> Iterator[T]:
    """The items of `blocks`, produced by a daemon thread up to `depth` items ahead of the caller."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in blocks:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the caller, raised there
            q.put(_Failed(exc))
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="cellcheck-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let a blocked put see the stop
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)
