"""Generic streaming of a crawl: a producer task feeding a bounded queue that an async
iterator drains, and the error of a failed crawl picked out of its exception groups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from careen.errors import CareenError
from careen.inventory import Artifact


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_DONE: Final = object()


def first_error(error: BaseException) -> BaseException:
    """The error to show from a (nested) exception group: a Careen error if there is one."""
    if isinstance(error, BaseExceptionGroup):
        found = [first_error(e) for e in error.exceptions]
        for inner in found:
            if isinstance(inner, CareenError):
                return inner
        return found[0] if found else error
    return error


Emit = Callable[[Artifact], Awaitable[None]]


async def stream(produce: Callable[[Emit], Awaitable[None]],
                 queue_size: int) -> AsyncIterator[Artifact]:
    """Run ``produce`` in the background and yield what it emits, through a queue of
    ``queue_size``: the producer waits when the consumer is slower, so memory stays bounded.
    Closing the iterator early cancels the producer."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_size)

    async def run() -> None:
        try:
            await produce(queue.put)
        except Exception as error:  # handed to the consumer, which raises it
            await queue.put(_Failed(first_error(error)))
        else:
            await queue.put(_DONE)

    task = asyncio.create_task(run())
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, Artifact):
                yield item
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
