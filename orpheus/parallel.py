"""Ordered parallel map over tracks in a process pool, with a progress bar.

Per-track work (decoding, silence analysis, feature extraction) is CPU-bound, so it runs in worker
processes. Results come back in input order, so outputs do not depend on scheduling.
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)

# What OpenBLAS, OpenMP and MKL read for their thread count when they load.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# Runtimes whose native thread pools make forking this process unsafe once they are loaded.
THREADED_RUNTIMES = ("tensorflow", "onnxruntime", "openvino", "ai_edge_litert", "tflite_runtime", "torch", "jax")

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(func: Callable[[T], R], items: Sequence[T], *, jobs: int, desc: str,
                 quiet: bool = False, chunksize: int | None = None, max_pending: int | None = None,
                 worker_nice: int = 0, sizes: Sequence[int] | None = None) -> Iterator[R]:
    """Yield `func(item)` for each item, in input order, using `jobs` processes.

    `func` must be a module-level function (it is pickled). With `jobs <= 1` it runs inline, which
    keeps tracebacks simple and avoids process start-up for tiny inputs. Workers are forked from this
    process when that is safe (`start_method`): it has imported what they need, so they start at once;
    otherwise (TensorFlow loaded, other threads running) they start from a fork server, which imports
    `func`'s module once, so each worker starts without re-importing it.

    `max_pending` bounds the results computed ahead of the consumer (for large results such as
    features): items are then submitted one by one, at most `max_pending` at a time, to one pool
    that lives for the whole run.

    `worker_nice` lowers the workers' scheduling priority (`os.nice`), for pools that feed this
    process: its own work (a model's multi-threaded forward pass) then keeps the cores, and the
    workers run in its gaps instead of stalling all its threads at once.

    Each worker is one thread of work: its BLAS (NumPy's OpenBLAS, for the mel filterbank's matrix
    product) runs single-threaded, since the pool already gives each core a process. Left at one
    thread per core, each worker's BLAS threads spin after every product and take the CPU from the
    other workers (measured: 2 decoding workers on 2 cores, 33.5 -> 18.0 ms a 30 s mp3).

    `sizes[i]`, when given, is how many tracks item i holds, for the progress bar.
    """
    steps = [1] * len(items) if sizes is None else list(sizes)
    bar = _Bar(total=sum(steps), desc=desc, unit="track", disable=quiet, dynamic_ncols=True)
    try:
        if jobs <= 1 or len(items) <= 1:
            for item, step in zip(items, steps):
                yield func(item)
                bar.update(step)
            return
        chunksize = chunksize or max(1, min(16, len(items) // (jobs * 8)))
        context = multiprocessing.get_context(start_method())
        if context.get_start_method() == "forkserver" and func.__module__ != "__main__":
            context.set_forkserver_preload([func.__module__])
        log.debug("%s: %d workers started by %s", desc, jobs, context.get_start_method())
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker,
                                 initargs=(worker_nice,)) as pool:
            if max_pending is None:
                results: Iterable[R] = pool.map(func, items, chunksize=chunksize)
            else:
                results = _bounded_map(pool, func, items, max(jobs, max_pending))
            for result, step in zip(results, steps):
                yield result
                bar.update(step)
    finally:
        bar.close()


class _Bar(tqdm):
    """tqdm without its monitor thread, which would keep `start_method` from forking."""
    monitor_interval = 0


def start_method() -> str:
    """How pool workers start: "fork" where forking this process is safe, else "forkserver" (or "spawn").

    Forking is safe on Linux while this process runs one Python thread and has loaded no inference
    runtime (`THREADED_RUNTIMES`: their thread pools and locks a child would inherit half-held). It
    is the cheapest start: the workers inherit the imported modules instead of importing them again
    (measured on Zen 4, preprocessing with 2 workers: about 0.4 s of start-up less than through the
    fork server).
    """
    methods = multiprocessing.get_all_start_methods()
    if (sys.platform == "linux" and "fork" in methods and threading.active_count() == 1
            and not any(name in sys.modules for name in THREADED_RUNTIMES)):
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _start_worker(nice: int) -> None:
    """A pool worker's set-up: its priority, and single-threaded native libraries (see `parallel_map`)."""
    for name in THREAD_VARIABLES:  # for the libraries loaded from now on
        os.environ[name] = "1"
    import numpy  # noqa: F401  (OpenBLAS loaded, so that the limit below reaches it)
    from threadpoolctl import threadpool_limits
    if nice:
        os.nice(nice)
    threadpool_limits(1)  # for those already loaded (the fork server preloads the work's module)


def _bounded_map(pool: ProcessPoolExecutor, func: Callable[[T], R], items: Sequence[T], window: int) -> Iterator[R]:
    """Ordered results of `func` over `items` with at most `window` submitted and not yet consumed."""
    remaining = iter(items)
    pending = collections.deque(pool.submit(func, item) for item in itertools.islice(remaining, window))
    while pending:
        result = pending.popleft().result()
        for item in itertools.islice(remaining, 1):
            pending.append(pool.submit(func, item))
        yield result


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Split `items` into lists of at most `size` items, in order."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
