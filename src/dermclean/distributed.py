"""Folder runs in resumable batches, in this process or on a Ray cluster's actors.

``detect`` and ``clean`` cut their sorted input list into fixed batches
(:func:`~dermclean.batch.plan_batches`) and give each to a :class:`BatchJob`, whose ``run`` loads
the batch's images from disk, runs the models and writes the batch's files into the build folder
(:func:`dermclean.io.building_dir`), each file atomically. Once a batch's files are written, the
driver appends one line for it to ``progress.jsonl`` there; the same command run again reads that
file and runs only the batches it does not list (:func:`run_resumable`).

Without a Ray address (``--address`` or the ``RAY_ADDRESS`` variable) the batches run here, one
after another, and Ray is never imported. With one, the driver joins that cluster and starts a pool
of actors, each holding one copy of the models (``num_cpus=1``; ``num_gpus=1`` on CUDA; as many as
the cluster has CPUs, or GPUs, unless ``--workers`` says). It sends each idle actor the next batch's
image paths, never pixels, so memory is bounded by batch size x workers; an actor returns its
batch's records. The batches are cut as in one process, so the outputs are the same.

Shared storage: actors work in the driver's working folder and read the images and models, and
write the outputs, at the driver's paths. Every node must see the input folder, the models and the
output's parent folder at the same path (one machine, or a shared filesystem). ``models:/`` URIs
resolve on each actor through ``MLFLOW_TRACKING_URI``, passed on to the workers with the package.

Failures: an actor (or its node) that dies loses only its batch in flight, which goes back to the
queue for another actor (``MAX_TRIES`` tries at most); files are written atomically and the progress
line only after them, so nothing is half-written or counted twice. When no actor is left the run
stops with :class:`WorkersLost` and the build is kept: the same command resumes it. A batch that
raises (a bad image under ``--on-error stop``) ends the run with that error, as in one process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

import dermclean
from dermclean.batch import Batch, BatchOutcome, ImageRef, Skipped, plan_batches
from dermclean.env import TELEMETRY_OFF
from dermclean.errors import OptionError, UsageError

PROGRESS_FILE = "progress.jsonl"
"""Inside the build folder only: one JSON line per finished batch; removed before the rename."""

MAX_TRIES = 3
"""Times a batch is sent to an actor before a run gives up on it (actors or nodes that died under it)."""

CONNECT_TIMEOUT_S = 5.0
"""How long a cluster's ``host:port`` has to accept a connection before the run is refused."""

START_TIMEOUT_S = 300.0
"""How long the driver waits for a first actor to load its models when none is running."""

FORWARDED_ENV = ("MLFLOW_TRACKING_URI",)
"""Variables of the driver that the workers get too (beside telemetry off)."""


class ClusterError(UsageError, RuntimeError):
    """A Ray cluster that cannot be joined or cannot run the job's actors."""


class WorkersLost(ClusterError):
    """The cluster lost the workers of a run halfway; its build folder is kept for the rerun to resume."""

    resumable = True


class BatchJob(Protocol):
    """One command's work per batch. Picklable: it holds settings only and is sent to every actor."""

    device: str | None

    def open(self) -> Any:
        """Load the models (once per process); what :meth:`run` gets as ``tools``."""

    def run(self, tools: Any, batch: Batch) -> BatchOutcome:
        """Load ``batch``'s images, run the models, write its files; its records and skipped inputs."""


@dataclass
class RunReport:
    """A finished run: every batch's outcome in input order, how many inputs an earlier run had done,
    and where it ran (``{"address", "workers", "device", "retried_batches"}``; ``None`` in this process)."""

    outcomes: list[BatchOutcome]
    n_resumed: int = 0
    cluster: dict[str, Any] | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for o in self.outcomes for r in o.records]

    @property
    def skipped(self) -> list[Skipped]:
        return [s for o in self.outcomes for s in o.skipped]

    @property
    def seconds(self) -> float:
        """Seconds the models spent over every batch (of this run and the one it resumed)."""
        return sum(o.seconds for o in self.outcomes)


def cluster_address(address: str | None) -> str | None:
    """``address`` (``--address``), else the ``RAY_ADDRESS`` environment variable, else ``None`` (no Ray).

    A ``host:port`` address must accept a connection within ``CONNECT_TIMEOUT_S`` (``ray.init`` would
    wait minutes on a wrong one); ``ClusterError`` otherwise, before any work."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    host, _, port = (address or "").rpartition(":")
    if address and host and port.isdigit() and "://" not in address:
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise ClusterError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); start "
                               f"one with `ray start --head`, or fix --address / RAY_ADDRESS") from None
    return address


def check_workers(workers: int | None) -> int | None:
    if workers is not None and int(workers) < 1:
        raise OptionError(f"--workers {workers}; expected at least 1 (or leave it out: one per CPU/GPU)")
    return None if workers is None else int(workers)


def run_resumable(job: BatchJob, refs: Sequence[ImageRef], *, build: Path, batch_size: int, tools: Any = None,
                  address: str | None = None, workers: int | None = None, desc: str = "run",
                  progress: bool = True) -> RunReport:
    """Run ``job`` over ``refs`` in batches of ``batch_size``, skipping those ``build``'s progress file lists.

    ``tools``: the job's models, already open in this process (else opened here when needed). With an
    ``address`` the batches run on that Ray cluster (see module docstring). The progress file is
    removed at the end; the caller writes the summary files.
    """
    batches = plan_batches(refs, batch_size)
    done = read_progress(build, len(batches))
    n_resumed = sum(o.n_inputs for o in done.values())
    todo = [b for b in batches if b.index not in done]
    bar = tqdm(total=len(refs), initial=n_resumed, disable=not progress or len(refs) < 2, desc=desc, unit="img")

    def finished(outcome: BatchOutcome) -> None:
        if outcome.index not in done:  # a batch is recorded once, whatever ran it
            append_progress(build, outcome)
            done[outcome.index] = outcome
            bar.update(outcome.n_inputs)

    cluster = None
    if address is None:
        tools = job.open() if tools is None and todo else tools
        for batch in todo:
            finished(job.run(tools, batch))
    elif todo:
        cluster = run_on_cluster(job, todo, address=address, workers=workers, on_done=finished)
    else:
        cluster = {"address": address, "workers": workers}  # everything was done by the run resumed
    bar.close()  # on success only: an error's one line follows the bar on the same line
    (build / PROGRESS_FILE).unlink(missing_ok=True)
    return RunReport([done[b.index] for b in batches], n_resumed=n_resumed, cluster=cluster)


def read_progress(build: Path, n_batches: int) -> dict[int, BatchOutcome]:
    """The batches a killed run finished, by index (a line cut short by the kill is ignored)."""
    done: dict[int, BatchOutcome] = {}
    path = build / PROGRESS_FILE
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            entry = json.loads(line)
            outcome = BatchOutcome(index=int(entry["batch"]), records=list(entry["records"]),
                                   skipped=[Skipped(**s) for s in entry["skipped"]], seconds=float(entry["seconds"]))
        except (ValueError, KeyError, TypeError):
            continue
        if 0 <= outcome.index < n_batches:
            done[outcome.index] = outcome
    return done


def append_progress(build: Path, outcome: BatchOutcome) -> None:
    """Record ``outcome`` as one line, flushed to disk (its files are already written)."""
    entry = {"batch": outcome.index, "records": outcome.records, "seconds": outcome.seconds,
             "skipped": [dataclasses.asdict(s) for s in outcome.skipped]}
    with open(build / PROGRESS_FILE, "a") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def package_runtime_env(forward: Sequence[str] = ()) -> dict:
    """``runtime_env`` that ships the driver's ``dermclean`` package to the workers, turns telemetry off
    there and passes on the driver's variables named in ``forward`` (those it has set)."""
    package_dir = Path(dermclean.__file__).resolve().parent
    env_vars = {k: os.environ.get(k, v) for k, v in TELEMETRY_OFF.items()}
    env_vars.update({k: os.environ[k] for k in forward if os.environ.get(k)})
    return {"py_modules": [str(package_dir)], "excludes": ["__pycache__", "*.pyc"], "env_vars": env_vars}


def run_on_cluster(job: BatchJob, batches: Sequence[Batch], *, address: str, workers: int | None,
                   on_done: Callable[[BatchOutcome], None]) -> dict[str, Any]:
    """Run ``batches`` on a pool of actors of the cluster at ``address``; ``on_done`` on the driver per batch."""
    with joined(address) as resources:
        use_gpu = _wants_gpu(job.device, resources, address)
        n = workers or max(1, int(resources.get("GPU" if use_gpu else "CPU", 1)))
        actor_job = dataclasses.replace(job, device="cuda" if use_gpu else "cpu")
        pool = _Pool(actor_job, n_workers=n, use_gpu=use_gpu)
        try:
            pool.drain(batches, on_done)
        finally:
            pool.close()
    return {"address": address, "workers": n, "device": actor_job.device,
            "retried_batches": sum(pool.tries.values())}


@contextlib.contextmanager
def joined(address: str) -> Iterator[Mapping[str, float]]:
    """Join the Ray cluster at ``address`` (unless this process already runs Ray); its total resources."""
    import ray

    if ray.is_initialized():
        yield dict(ray.cluster_resources())
        return
    try:
        ray.init(address=address, runtime_env=package_runtime_env(FORWARDED_ENV), include_dashboard=False,
                 log_to_driver=False, configure_logging=True, logging_level="WARNING")
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ClusterError(f"--address {address}: cannot join a Ray cluster there ({str(exc).splitlines()[0]}); "
                           f"start one with `ray start --head`, or fix --address / RAY_ADDRESS") from None
    try:
        yield dict(ray.cluster_resources())
    finally:
        ray.shutdown()


def _wants_gpu(device: str | None, resources: Mapping[str, float], address: str) -> bool:
    """GPU actors for ``--device cuda[:N]``, or for no ``--device`` on a cluster with GPUs."""
    wanted = device is not None and str(device).startswith("cuda")
    if wanted and not resources.get("GPU"):
        raise ClusterError(f"--device {device}: the Ray cluster at {address} has no GPU; use --device cpu")
    return wanted or (device is None and bool(resources.get("GPU")))


class _Worker:
    """One actor: the job's models loaded once, working in the driver's folder (relative paths, and the
    messages naming them, read as on the driver)."""

    def __init__(self, job: BatchJob, cwd: str) -> None:
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.job, self.tools = job, job.open()

    def ready(self) -> bool:
        return True

    def run(self, batch: Batch) -> BatchOutcome:
        return self.job.run(self.tools, batch)


class _Pool:
    """Actors that take one batch at a time; an actor that dies is dropped and its batch sent again."""

    def __init__(self, job: BatchJob, *, n_workers: int, use_gpu: bool) -> None:
        import ray

        actor = ray.remote(num_cpus=1, num_gpus=1 if use_gpu else 0, max_restarts=0, max_task_retries=0)(_Worker)
        actors = [actor.remote(job, os.getcwd()) for _ in range(n_workers)]
        self.starting = {a.ready.remote(): a for a in actors}
        self.idle: list[Any] = []
        self.busy: dict[Any, tuple[Any, Batch]] = {}
        self.tries: dict[int, int] = {}
        self.start_error = ""

    def drain(self, batches: Sequence[Batch], on_done: Callable[[BatchOutcome], None]) -> None:
        import ray

        queue = deque(batches)
        while queue or self.busy:
            while self.idle and queue:
                actor, batch = self.idle.pop(), queue.popleft()
                self.busy[actor.run.remote(batch)] = (actor, batch)
            if not (self.busy or self.idle or self.starting):
                raise WorkersLost(f"every Ray worker died{self.start_error}; {len(queue)} batch(es) not done. "
                                   f"Run the same command again to resume")
            timeout = None if self.busy else START_TIMEOUT_S
            ready, _ = ray.wait([*self.busy, *self.starting], num_returns=1, timeout=timeout)
            if not ready:
                raise WorkersLost(f"no Ray worker started within {START_TIMEOUT_S:.0f} s; does the cluster have a "
                                   f"free CPU (GPU with --device cuda)? Run the same command again to resume")
            if ready[0] in self.starting:
                self._started(ready[0])
            else:
                self._returned(ready[0], queue, on_done)

    def _started(self, ref: Any) -> None:
        import ray

        actor = self.starting.pop(ref)
        try:
            ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            ray.kill(actor)  # could not load its models (on that node); the others go on
            self.start_error = f" (one could not start: {_last_line(str(exc))})"
            return
        self.idle.append(actor)

    def _returned(self, ref: Any, queue: deque, on_done: Callable[[BatchOutcome], None]) -> None:
        import ray

        actor, batch = self.busy.pop(ref)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            raise _cause(exc) from None
        except ray.exceptions.RayActorError:
            ray.kill(actor)
            self.tries[batch.index] = self.tries.get(batch.index, 0) + 1
            if self.tries[batch.index] >= MAX_TRIES:
                raise WorkersLost(f"batch {batch.index} (from {batch.refs[0].name}) lost its worker "
                                   f"{MAX_TRIES} times; run the same command again to resume") from None
            queue.appendleft(batch)
            return
        self.idle.append(actor)
        on_done(outcome)

    def close(self) -> None:
        import ray

        for actor in [*self.starting.values(), *self.idle, *(a for a, _ in self.busy.values())]:
            ray.kill(actor)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _cause(exc: Exception) -> BaseException:
    """The exception a batch raised inside an actor (an ``ImageError`` keeps its one-line message)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc
