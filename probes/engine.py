"""Execution engines: one pure batch function mapped over partitions, here or on Dask.

A *runner* maps a module-level function over items (segment names, input files) and
yields the results in item order:

* ``local`` (the default) calls the function in this process, one item at a time, so at
  most one partition is in memory.
* ``dask`` submits one task per item to a ``distributed`` cluster: the scheduler at
  ``scheduler`` (``tcp://host:8786``; the workers must have pathexp installed and see the
  campaign folder), or, without an address, a :class:`distributed.LocalCluster` of
  ``workers`` single-threaded processes (default: one per core) started for the run and
  closed after it.

The same context (a reference snapshot, lookup tables) is built once per worker process,
not once per task: :meth:`Runner.map` takes ``setup(shared) -> ctx``; ``shared`` is sent to
every worker once and ``setup`` runs on first use, cached per worker under a token for the
run. Task functions are called as ``fn(item, ctx)``.

Arrow's own thread pool is sized to the worker's threads on Dask workers, so "2 workers"
means two cores' worth of work, not two processes each using every core; the helper
threads of ingest (:func:`spare_threads`) follow the same budget.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from probes.errors import ConfigError, StoreError

__all__ = ["ENGINES", "Runner", "open_runner", "refuse_while_a_child_imports_main", "spare_threads"]

#: Engine names accepted by ``--engine``.
ENGINES = ("local", "dask")
_PLUGIN = "pathexp-context"
#: Items submitted ahead per local thread: a long item does not idle the other threads
#: (only ``threads`` items run at once; the results are small).
_WINDOW = 4
#: Contexts kept per worker (one per concurrent run is enough).
_KEEP_CONTEXTS = 2


class Runner:
    """Maps functions over items in this process (the ``local`` engine).

    ``threads`` items run at once (default: 2, or 1 on a single core): the table kernels
    and Parquet writes release the GIL, so one partition is computed while the previous
    one is compressed and written. Memory is bounded by ``threads`` partitions in work
    (plus a few finished results waiting their turn), whatever the number of items.
    """

    engine = "local"

    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = threads if threads is not None else min(2, os.cpu_count() or 1)

    @property
    def slots(self) -> int:
        """Items that run at once: how finely a pass is worth cutting."""
        return self.threads

    def map(
        self,
        fn: Callable[[Any, Any], Any],
        items: Iterable[Any],
        *,
        setup: Callable[[Any], Any] | None = None,
        shared: Any = None,
    ) -> Generator[Any, None, None]:
        """Yield ``fn(item, ctx)`` for each item, in order; ``ctx = setup(shared)``."""
        ctx = setup(shared) if setup is not None else shared
        if self.threads <= 1:
            for item in items:
                yield fn(item, ctx)
            return
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="pathexp-local") as pool:
            window: deque[Future] = deque()
            try:
                for item in items:
                    window.append(pool.submit(fn, item, ctx))
                    if len(window) >= _WINDOW * self.threads:
                        yield window.popleft().result()
                while window:
                    yield window.popleft().result()
            finally:
                for fut in window:
                    fut.cancel()


class _DaskRunner(Runner):
    engine = "dask"

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def slots(self) -> int:
        """The threads of the cluster's workers now (at least 1)."""
        return max(1, sum(self.client.nthreads().values()))

    def map(
        self,
        fn: Callable[[Any, Any], Any],
        items: Iterable[Any],
        *,
        setup: Callable[[Any], Any] | None = None,
        shared: Any = None,
    ) -> Generator[Any, None, None]:
        items = list(items)
        if not items:
            return
        token = uuid.uuid4().hex
        # one object under a key of its own: a dict scattered as it is would be stored under
        # its own keys ("columns", ...), which the next map's dict would reuse while the
        # scheduler releases them ("lost dependencies")
        shared_f = self.client.scatter([shared], broadcast=True, hash=False)[0] if shared is not None else None
        futures = [
            self.client.submit(_run_task, fn, item, setup, shared_f, token, key=f"pathexp-{token}-{i}", pure=False)
            for i, item in enumerate(items)
        ]
        done = 0
        try:
            for fut in futures:  # in order: the caller commits results as they arrive
                yield fut.result()
                done += 1
        finally:
            if done < len(futures):  # the caller stopped early or a task failed
                self.client.cancel(futures[done:])


def _run_task(fn: Callable[[Any, Any], Any], item: Any, setup: Callable[[Any], Any] | None, shared: Any, token: str) -> Any:
    """Worker side: build (or reuse) the run's context, then call ``fn(item, ctx)``.

    An OSError (a file the worker cannot read or write) becomes a
    :class:`probes.errors.StoreError` naming the worker: on a remote cluster it usually
    means the workers do not see the campaign folder at the same path.
    """
    from distributed import get_worker

    worker = get_worker()
    try:
        if setup is None:
            return fn(item, shared)
        plugin = worker.plugins.get(_PLUGIN)
        cache: dict[str, Any] = getattr(plugin, "cache", {})
        if token not in cache:
            while len(cache) >= _KEEP_CONTEXTS:
                cache.pop(next(iter(cache)))
            cache[token] = setup(shared)
        return fn(item, cache[token])
    except OSError as exc:
        raise StoreError(
            f"Dask worker {worker.address}: {exc} (do the workers see the campaign folder at the same path?)"
        ) from exc


def _context_plugin() -> Any:
    from distributed import WorkerPlugin

    class ContextPlugin(WorkerPlugin):
        """Holds per-run contexts on a worker; sizes Arrow's pool to the worker's threads
        (and so the DuckDB database :mod:`analysis._tables` opens in the worker); keeps
        glibc from handing freed heap back at once (:func:`probes.memory.reuse_large_buffers`:
        Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which made a
        worker's paths tasks 30-45% slower than the same tasks in a plain process)."""

        name = _PLUGIN

        def __init__(self) -> None:
            self.cache: dict[str, Any] = {}

        def setup(self, worker: Any) -> None:
            import pyarrow as pa

            threads = max(1, int(getattr(getattr(worker, "state", None), "nthreads", 1) or 1))
            pa.set_cpu_count(threads)
            pa.set_io_thread_count(max(threads, 2))
            from probes import memory

            memory.reuse_large_buffers()

    return ContextPlugin()


def spare_threads() -> bool:
    """Whether a step may overlap its own work on helper threads (decompressing ahead,
    decoding the next block, writing the last one): only when Arrow's CPU budget is more
    than one core. A single-threaded Dask worker (its budget is its one thread, see
    :func:`_context_plugin`) or a one-core machine does the same work one step after
    another, so that N workers use N cores, not N plus their helpers.
    """
    import pyarrow as pa

    return pa.cpu_count() > 1


def refuse_while_a_child_imports_main(what: str) -> None:
    """Raise when called while a spawned child process imports the main script.

    Dask's LocalCluster (and any ``spawn`` process) starts each worker by importing the
    script that started it again. A script that calls pathexp at its top level, without
    ``if __name__ == "__main__":``, would then run the call once more in every worker,
    which waits for the campaign lock its parent holds while the parent waits for its
    workers: a silent hang. This turns it into an error naming the fix.

    Raises
    ------
    probes.errors.ConfigError
        The caller is running inside that import.
    """
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise ConfigError(
            f"{what} was called while a worker process was importing the main script: "
            'put the code that calls pathexp under `if __name__ == "__main__":` '
            "(Dask and multiprocessing start workers by importing that script again)"
        )


@contextmanager
def open_runner(
    engine: str = "local",
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    local_threads: int | None = None,
) -> Iterator[Runner]:
    """A runner for ``engine``; for ``dask``, connect to ``scheduler`` or start a LocalCluster.

    Parameters
    ----------
    engine : {"local", "dask"}
    scheduler : str, optional
        Address of a running Dask scheduler (``dask`` only).
    workers : int, optional
        Worker processes of the LocalCluster started when there is no ``scheduler``
        (default: the number of cores). Each has one thread; the dashboard is off.
    local_threads : int, optional
        Items in flight on the ``local`` engine (see :class:`Runner`; 1 = strictly one
        after the other).

    Raises
    ------
    probes.errors.ConfigError
        An unknown engine, options that need ``--engine dask``, a scheduler that cannot
        be reached, or a call from a worker process importing the main script again
        (:func:`refuse_while_a_child_imports_main`).
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    refuse_while_a_child_imports_main(f"a {engine} runner")
    if engine == "local":
        if scheduler is not None or workers is not None:
            raise ConfigError("--scheduler and --workers need --engine dask")
        yield Runner(threads=local_threads)
        return
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if workers is not None and scheduler is not None:
        raise ConfigError("--workers sizes the LocalCluster started without --scheduler; give one of them")
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
        raise ConfigError("--engine dask needs the 'distributed' package") from exc
    cluster = None
    if scheduler is None:
        try:
            cluster = LocalCluster(
                n_workers=workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                # no dashboard; the scheduler's health endpoint on a free port, not 8787
                scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
                silence_logs=logging.ERROR,
            )
        except RuntimeError as exc:  # "Nanny failed to start": the worker's own error is on stderr
            raise ConfigError(
                f"the Dask workers did not start ({str(exc).rstrip('.')}; their error is printed above). A script "
                'that runs pathexp on Dask must do it under `if __name__ == "__main__":`'
            ) from exc
        address: Any = cluster
    else:
        address = scheduler
    try:
        try:
            client = Client(address, timeout="30s")
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        try:
            client.register_plugin(_context_plugin(), name=_PLUGIN)
            yield _DaskRunner(client)
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()

