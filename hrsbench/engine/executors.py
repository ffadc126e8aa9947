"""Where a run's tasks execute: in this process (``local``) or on a Ray cluster (``ray``).

An executor gets the tasks of a run (model trainings and cells, each a picklable module-level
function with its arguments) and calls ``on_done(task, result)`` in the driver as each one
finishes, so the driver alone writes ``results.jsonl`` and the model cache. A task may take the
result of another task as its first argument (a cell takes its trained model) and may wait for
other tasks without taking their results (a model that reuses an earlier model's pieces).

A task that raises does not stop the others: its error is collected, tasks needing its result
are skipped, and the executor returns the failures for the driver to report in one line.
``KeyboardInterrupt`` stops everything at once; finished tasks' results are already written.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hrsbench.errors import HrsbenchError

EXECUTORS = ("local", "ray")

#: Times Ray reruns a task whose worker process died (killed, out of memory, node lost).
MAX_RETRIES = 3
#: Seconds a cluster address may take to accept a connection before the run is refused.
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Task:
    """A unit of work: ``fn(*args)``, or ``fn(result_of_input, *args)`` with ``input`` set."""

    key: str
    label: str
    kind: str  # "model" or "cell"
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    input: str | None = None
    after: tuple[str, ...] = ()

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*([self.input] if self.input else []), *self.after]))


@dataclass(frozen=True)
class Failure:
    """A task that raised (or was skipped because a task it needs failed)."""

    task: Task
    error: str
    #: What the task raised, so ``--debug`` can show its traceback behind the one line.
    cause: BaseException | None = field(default=None, compare=False)

    def line(self) -> str:
        return f"{self.task.kind} {self.task.label}: {self.error}"


OnDone = Callable[[Task, Any], None]


class Executor(Protocol):
    #: Whether tasks run in the driver's process (they may then share its objects).
    in_process: bool

    def run(self, tasks: Sequence[Task], on_done: OnDone) -> list[Failure]:
        """Run ``tasks`` (given in an order where each comes after what it needs)."""
        ...


def describe(e: BaseException) -> str:
    """An exception as the one line a user sees: an HrsbenchError's own message, else the
    exception's type and first line."""
    if isinstance(e, HrsbenchError):
        return str(e)
    first = (str(e).splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def raise_failures(failures: Sequence[Failure]) -> None:
    """One line naming the first failed task, and how many others failed or were skipped."""
    if not failures:
        return
    first = failures[0]
    more = f" (and {len(failures) - 1} more tasks failed or were skipped)" if failures[1:] else ""
    bug = first.cause is not None and not isinstance(first.cause, HrsbenchError)
    hint = "; unexpected, so possibly a bug: rerun with --debug for its traceback" if bug else ""
    raise HrsbenchError(first.line() + more + hint) from first.cause


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (unchanged when None), restoring the count afterwards."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LocalExecutor:
    """Every task in this process, one after another, in the order given."""

    in_process = True

    def __init__(self, threads_per_task: int | None = None) -> None:
        self.threads = threads_per_task

    def run(self, tasks: Sequence[Task], on_done: OnDone) -> list[Failure]:
        results: dict[str, Any] = {}
        users = _count_users(tasks)
        failed: dict[str, Failure] = {}
        for task in tasks:
            if blocked := _blocked(task, failed):
                failed[task.key] = blocked
                continue
            args = (results[task.input], *task.args) if task.input else task.args
            try:
                with torch_threads(self.threads):
                    result = task.fn(*args)
            except Exception as e:
                failed[task.key] = Failure(task, describe(e), e)
                continue
            if users.get(task.key):
                results[task.key] = result
            on_done(task, result)
            if task.input:  # free a model once its last cell is done
                users[task.input] -= 1
                if users[task.input] == 0:
                    results.pop(task.input, None)
        return list(failed.values())


def _count_users(tasks: Sequence[Task]) -> dict[str, int]:
    users: dict[str, int] = {}
    for t in tasks:
        if t.input:
            users[t.input] = users.get(t.input, 0) + 1
    return users


def _blocked(task: Task, failed: dict[str, Failure]) -> Failure | None:
    for need in task.needs:
        if need in failed:
            return Failure(task, f"skipped: {failed[need].task.kind} "
                                 f"{failed[need].task.label} failed")
    return None


def node_name() -> str:
    """Where the calling code runs, as a one-line error names it: the Ray node (its IP address
    and the start of its id: several nodes may share an address) in a process connected to Ray,
    else "this machine". Looks Ray up only if it is already imported, so local runs never load
    it."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return "this machine"
    node_id = ray.get_runtime_context().get_node_id()
    return f"Ray node {ray.util.get_node_ip_address()} (id {node_id[:8]})"


def _call(fn: Callable[..., Any], threads: int | None, *args: Any) -> Any:
    """What a Ray worker runs: the task with its torch thread count set."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return fn(*args)


def _warm(fn: Callable[..., Any]) -> None:
    """What a Ray worker runs first: receiving ``fn``, a task function pickled by reference,
    imports its module and the engine with it (torch, ART: seconds), so that the worker's first
    real task does not pay for them on the run's critical path."""
    del fn


class RayExecutor:
    """Tasks on a Ray cluster: each asks for ``threads_per_task`` CPUs (and ``gpus_per_task``
    GPUs on CUDA: one, or a fraction so that several tasks share one),
    starts as soon as what it needs is done, and is rerun if its worker process dies."""

    in_process = False

    def __init__(self, address: str | None = None, threads_per_task: int = 1,
                 gpus_per_task: float = 0, num_cpus: int | None = None) -> None:
        self.address = address
        self.threads = max(int(threads_per_task or 1), 1)
        self.gpus = gpus_per_task
        self.num_cpus = num_cpus

    def preflight(self) -> None:
        """Before anything is written: Ray is installed, and a cluster address given as
        HOST:PORT answers. Ray itself retries a silent address for minutes; a refused or
        unanswered connection here is one line within seconds."""
        try:
            import ray  # noqa: F401
        except ImportError:
            raise HrsbenchError(
                "--executor ray needs Ray: pip install 'hrsbench[ray]'"
            ) from None
        if not self.address or self.address == "auto" or "://" in self.address:
            return
        host, _, port = self.address.rpartition(":")
        if not host or not port.isdigit():
            raise HrsbenchError(f"--ray-address {self.address!r}: give HOST:PORT of the "
                                "cluster's head (ray start --head prints it) or 'auto'")
        import socket

        try:
            with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
                pass
        except OSError as e:
            cause = "connection refused" if isinstance(e, ConnectionRefusedError) else (
                f"no answer within {PROBE_TIMEOUT_S:g} s" if isinstance(e, TimeoutError)
                else describe(e))
            raise HrsbenchError(
                f"cannot join the Ray cluster at {self.address}: {cause}; start its head there "
                f"(ray start --head --port={port}) or give the address it prints "
                "(--ray-address HOST:PORT, or auto on one of its nodes)") from None

    @contextlib.contextmanager
    def _cluster(self) -> Iterator[Any]:
        """Join the cluster at ``address`` ("auto": the one this machine belongs to), or start a
        local instance (shut down afterwards); a Ray already initialised here is used as is."""
        try:
            import ray
        except ImportError:
            raise HrsbenchError(
                "--executor ray needs Ray: pip install 'hrsbench[ray]'"
            ) from None
        if ray.is_initialized():
            yield ray
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address:
            kwargs["address"] = self.address
        elif self.num_cpus:
            kwargs["num_cpus"] = self.num_cpus
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            what = f"join the Ray cluster at {self.address}" if self.address else \
                "start a local Ray instance"
            hint = ("; the cluster uses token authentication: set RAY_AUTH_MODE=token and "
                    "RAY_AUTH_TOKEN to its token here" if "auth" in str(e).lower() else "")
            raise HrsbenchError(f"cannot {what}: {describe(e)}{hint}") from None
        try:
            yield ray
        finally:
            ray.shutdown()

    def run(self, tasks: Sequence[Task], on_done: OnDone) -> list[Failure]:
        with self._cluster() as ray:
            if self.gpus and ray.cluster_resources().get("GPU", 0) < self.gpus:
                raise HrsbenchError("--device cuda: the Ray cluster has no GPU; start its "
                                    "nodes on GPU machines or use --device cpu")
            return _RayRun(ray, self, tasks, on_done).run()


class _RayRun:
    """One run's bookkeeping: submit a task once what it needs is done, collect results."""

    def __init__(self, ray: Any, ex: RayExecutor, tasks: Sequence[Task], on_done: OnDone) -> None:
        self.ray, self.on_done = ray, on_done
        self.remote = ray.remote(_call).options(
            num_cpus=ex.threads, num_gpus=ex.gpus, max_retries=MAX_RETRIES,
            retry_exceptions=False,
        )
        self.threads = ex.threads
        self.waiting = list(tasks)
        self.refs: dict[str, Any] = {}  # finished task key → its result in the object store
        self.pending: dict[Any, Task] = {}
        self.failed: dict[str, Failure] = {}
        self.users = _count_users(tasks)
        self.known = {t.key for t in tasks}  # a need outside the graph is already met
        self.warming: list[Any] = []  # refs of the workers' import tasks

    def run(self) -> list[Failure]:
        try:
            self._warm_workers()
            self._submit_ready()
            while self.pending:
                (ref,), _ = self.ray.wait(list(self.pending), num_returns=1)
                self._finish(ref, self.pending.pop(ref))
                self._submit_ready()
        finally:
            for ref in self.pending:
                self.ray.cancel(ref, force=True)
        return list(self.failed.values())

    def _warm_workers(self) -> None:
        """Start the engine's imports on as many workers as can run tasks at once (not more than
        there are tasks): they load in parallel while the first tasks wait for a free slot,
        instead of one after another as each worker receives its first task."""
        slots = int(self.ray.available_resources().get("CPU", 0) // self.threads)
        warm = self.ray.remote(_warm).options(num_cpus=self.threads)
        self.warming = [warm.remote(self.waiting[0].fn)
                        for _ in range(min(slots, len(self.waiting)))]

    def _submit_ready(self) -> None:
        still = []
        for task in self.waiting:
            if blocked := _blocked(task, self.failed):
                self.failed[task.key] = blocked
            elif all(n in self.refs or n not in self.known for n in task.needs):
                args = (self.refs[task.input], *task.args) if task.input else task.args
                self.pending[self.remote.remote(task.fn, self.threads, *args)] = task
            else:
                still.append(task)
        self.waiting = still

    def _finish(self, ref: Any, task: Task) -> None:
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            self.failed[task.key] = Failure(task, describe(cause or e), cause or e)
            return
        except self.ray.exceptions.RayError as e:
            self.failed[task.key] = Failure(task, f"{type(e).__name__} (after {MAX_RETRIES} "
                                                  "retries)")
            return
        self.refs[task.key] = ref
        self.on_done(task, result)
        if task.input:
            self.users[task.input] -= 1
            if self.users[task.input] == 0:
                self.refs[task.input] = None  # drop the driver's reference to the model


def make_executor(name: str, address: str | None = None, threads_per_task: int | None = None,
                  device: str = "cpu", gpus_per_task: float | None = None) -> Executor:
    """The executor called ``name``; bad options fail here, before any work.

    ``gpus_per_task`` (Ray on CUDA only) lets several tasks share a GPU: a Table A1 model's
    training or attack uses a sliver of a modern GPU, so 0.25 runs four at once on each; the
    default is one task per GPU."""
    if name not in EXECUTORS:
        raise HrsbenchError(f"unknown executor {name!r}; use one of: {', '.join(EXECUTORS)}")
    if threads_per_task is not None and threads_per_task < 1:
        raise HrsbenchError("--threads-per-task must be at least 1")
    check_gpus_per_task(gpus_per_task, name, device)
    if name == "local":
        if address:
            raise HrsbenchError("--ray-address needs --executor ray")
        return LocalExecutor(threads_per_task)
    gpus = gpus_per_task or (1 if device.startswith("cuda") else 0)
    return RayExecutor(address, threads_per_task or 1, gpus)


def check_gpus_per_task(gpus: float | None, executor: str, device: str) -> None:
    """``--gpus-per-task`` is a share Ray can grant: a fraction in (0, 1] or a whole number of
    GPUs, on Ray, with ``--device cuda``."""
    if gpus is None:
        return
    if executor != "ray":
        raise HrsbenchError("--gpus-per-task needs --executor ray (GPUs are shared out by Ray)")
    if not device.startswith("cuda"):
        raise HrsbenchError("--gpus-per-task needs --device cuda")
    if not (gpus > 0 and (gpus <= 1 or float(gpus).is_integer())):
        raise HrsbenchError(f"--gpus-per-task {gpus:g}: use a fraction in (0, 1] (e.g. 0.25: "
                            "four tasks per GPU) or a whole number of GPUs")
