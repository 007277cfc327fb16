"""Worker processes that are safe to start from a process that already runs threads.

    with process_pool(2) as pool:
        episodes = pool.map(generate_episode, seeds)

A forked child holds a copy of the parent's memory but only the forking thread: any lock another thread held
at that instant (an OpenMP team of torch, tqdm's monitor, a logging handler, malloc's arenas) stays locked in
the child for ever, and the first child that needs it hangs. Notebooks, pytest and the viewer all run such
threads, so a `fork` pool hangs from time to time, never reproducibly. The pools here start their workers
from a *fork server*: one clean single-threaded process, started on first use with numpy and torch
already imported, so a worker starts in a fraction of a second and inherits no held lock.

What a worker needs travels by pickling: the task arguments, and state shared by every task through
`initializer(*initargs)` (sent once per worker, not once per task).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable

# imported once by the fork server, so that a worker starts with them loaded (importing torch takes seconds)
PRELOAD = ["numpy", "torch"]


def process_pool(workers: int, initializer: Callable | None = None, initargs: tuple = ()):
    """A `multiprocessing.Pool` of `workers` processes started from a fork server (see the module's text)."""
    if int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx.Pool(int(workers), initializer=initializer, initargs=initargs)
