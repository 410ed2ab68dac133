"""Where the study's independent tasks run: in this process (``local``) or as Ray tasks (``ray``).

The five-fold grid's cells and the projection's batches do not depend on each other. An executor
runs ``fn(shared, item)`` for each item and hands the results back to the driver (this process) as
they finish; the driver alone writes results files and caches, so the locks, the resume rules and
the rows are the same whichever executor ran the work.

Ray (``pip install -e ".[ray]"``) is reached with ``ray.init(address=...)``: ``None`` starts a
local Ray on this machine, ``"auto"`` joins the cluster this machine belongs to, and
``"ray://head:10001"`` (Ray Client) or the address of a head node (a laptop, a cluster, KubeRay or
a Slurm-launched Ray) joins that one. The workers need ``dapper`` installed (the same version) and
any model file the task reads at the same path; the generator and other modules travel with the
task through Ray's object store. A worker that dies mid-task (a node lost, a process killed) is
retried by Ray (``max_retries``); an exception raised by the task itself is not retried.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator

__all__ = ["EXECUTORS", "LocalExecutor", "ProcessExecutor", "RayExecutor", "get_executor", "check_executor"]

EXECUTORS = ("local", "ray")


def check_executor(executor: str, ray_address=None) -> None:
    """Raise a clear error for an unknown executor, or for Ray asked for and not installed."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not one of {', '.join(EXECUTORS)}")
    if ray_address is not None and executor != "ray":
        raise ValueError(f"ray_address={ray_address!r} is given but executor={executor!r}; set executor='ray'")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise ImportError("executor='ray' needs Ray: pip install -e \".[ray]\" (the optional extra)") from e


class LocalExecutor:
    """Runs each task in this process, one after another, in order."""

    name = "local"

    def map(self, fn: Callable, items: Iterable, shared=None, num_cpus: float = 1,
            num_gpus: float = 0) -> Iterator[tuple[int, object]]:
        """Yield ``(index, fn(shared, item))`` for each item."""
        for i, item in enumerate(items):
            yield i, fn(shared, item)

    def gpus_available(self) -> bool:
        import torch

        return torch.cuda.is_available()


def _call(fn, shared, item):
    return fn(shared, item)


_PROCESS_SHARED: dict = {}


def _process_init(shared, threads) -> None:
    _PROCESS_SHARED["shared"] = shared
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _process_call(job):
    fn, i, item = job
    return i, fn(_PROCESS_SHARED["shared"], item)


class ProcessExecutor:
    """Runs tasks in ``workers`` processes of this machine, for the work a Python process cannot
    spread over cores itself (small batches keep two torch threads of one process only partly busy;
    the renderer is single-threaded numpy).

    ``threads``: torch threads of each worker (None: the worker never sets them, for work without
    torch). ``start``: ``"spawn"`` (default; a fork after torch has used its OpenMP pool can hang)
    or ``"fork"`` (cheap, for workers that never touch torch; spawn where fork is missing).
    ``shared`` reaches each worker once, when it starts, not with every task; ``fn`` must be a
    module-level function (it is pickled). With ``workers <= 1`` the tasks run in this process.
    """

    name = "processes"

    def __init__(self, workers: int, threads: int | None = 1, start: str = "spawn"):
        if start not in ("spawn", "fork"):
            raise ValueError(f"start={start!r} is not 'spawn' or 'fork'")
        if start == "fork" and "fork" not in mp.get_all_start_methods():
            start = "spawn"
        self.workers, self.threads, self.start = int(workers), threads, start

    def gpus_available(self) -> bool:
        return False

    def map(self, fn: Callable, items: Iterable, shared=None, num_cpus: float = 1, num_gpus: float = 0,
            ordered: bool = False) -> Iterator[tuple[int, object]]:
        """Yield ``(index, fn(shared, item))`` as tasks finish (in order with ``ordered``).
        ``num_cpus``/``num_gpus`` are Ray's requests, ignored here (``workers`` and ``threads`` size
        the pool)."""
        items = list(items)
        if self.workers <= 1 or len(items) <= 1:
            yield from LocalExecutor().map(fn, items, shared)
            return

        ctx = mp.get_context(self.start)
        with ctx.Pool(min(self.workers, len(items)), initializer=_process_init,
                      initargs=(shared, self.threads)) as pool:
            jobs = [(fn, i, item) for i, item in enumerate(items)]
            yield from (pool.imap if ordered else pool.imap_unordered)(_process_call, jobs)


class RayExecutor:
    """Runs each task as a Ray task with ``num_cpus``/``num_gpus`` requests.

    ``address``: see the module's doc. ``init_kwargs``: more arguments of ``ray.init`` when this
    executor starts Ray (``num_cpus`` for a local one, ``runtime_env``...). ``max_retries``: how
    often Ray reruns a task whose worker died.
    """

    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 3, **init_kwargs):
        check_executor("ray")
        self.address = address
        self.max_retries = max_retries
        self.init_kwargs = init_kwargs

    def _ray(self):
        import ray

        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            if self.address is None:
                kwargs.setdefault("num_cpus", os.cpu_count())
            ray.init(address=self.address, **kwargs)
        return ray

    def gpus_available(self) -> bool:
        return self._ray().cluster_resources().get("GPU", 0) > 0

    def map(self, fn: Callable, items: Iterable, shared=None, num_cpus: float = 1,
            num_gpus: float = 0) -> Iterator[tuple[int, object]]:
        """Yield ``(index, result)`` as tasks finish (any order). ``shared`` goes to the object
        store once and reaches every task. Tasks still running when the caller stops iterating
        (an error, an interrupt) are cancelled."""
        ray = self._ray()
        shared_ref = ray.put(shared)
        task = ray.remote(_call).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=self.max_retries,
                                         retry_exceptions=False)
        pending = {task.remote(fn, shared_ref, item): i for i, item in enumerate(items)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    yield i, ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def get_executor(executor="local", ray_address: str | None = None, **init_kwargs):
    """An executor by name (``local`` or ``ray``); an executor object is returned as it is."""
    if not isinstance(executor, str):
        return executor
    check_executor(executor, ray_address)
    if executor == "local":
        return LocalExecutor()
    return RayExecutor(ray_address, **init_kwargs)
