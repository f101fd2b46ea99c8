"""The Ray executor (``--executor ray``, the ``ray`` extra): pending batches mapped through Ray Data actor
pools, each actor holding one model.

- **Ray.** ``ray_address`` joins a running cluster (``auto``, ``HOST:6379``, ``ray://HEAD:10001``); without
  it a Ray already initialised in this process is reused, else a local one starts once per process (the
  CPUs this process may use, no dashboard).
- **Blocks.** The pending work becomes a Ray Data dataset with one row per planned batch (its records as
  JSON text: a worker computes exactly the batch a local run would, and nothing depends on Arrow's type
  inference), one block per row, so batches go to whichever actor is free; ``map_batches`` hands an
  actor one planned batch per call.
- **Actors** (:func:`plan_actors`): one per GPU (``num_gpus=1``) when the cluster has GPUs and the device
  is not ``cpu``; else one per CPU slot of ``worker_threads`` torch threads (``num_cpus=worker_threads``);
  ``workers`` sets the count; never more actors than batches. Each actor builds a
  :class:`~.context.Context` from the work's options once (one model) and the computation from the
  work's :class:`~.runner.Recipe` once, checks that it loaded the same resources (identities) as this
  process, and stores every finished batch itself, atomically, in the same score store under this
  process's cache folder (a shared filesystem on a cluster; part files are named by time and pid, so
  actors never collide). Local and Ray runs therefore share one cache, and a killed run resumes from it
  under either executor.
- **Results** stream back as batches finish, in any order. An error in an actor is raised here as the
  same exception (a user's mistake stays a one-line message; the actor's traceback is attached as a note).

Work without a recipe, or whose resources were handed over as objects the options cannot name, runs in
this process; one log line says so.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import pickle
import socket
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..cache import ScoreStore, _json_default, cache_root
from ..data.record import Record
from ..errors import ConfigError, MissingDependencyError
from .executor import CallWork, Executor, LocalExecutor
from .options import RuntimeOptions
from .runner import BatchWork, Recipe, finish_batch

log = logging.getLogger(__name__)


def import_ray():
    """The ``ray`` module with Ray Data, or a :class:`MissingDependencyError` naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError("ray[data]", "ray", "--executor ray") from None
    return ray


def local_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def connect(options: RuntimeOptions):
    """An initialised Ray: the cluster at ``options.ray_address``, the one this process already joined, or a
    new local one. Ray Data's own progress bars and execution logs are turned off (the runner shows one bar)."""
    ray = import_ray()
    if not ray.is_initialized():
        level = logging.WARNING if options.progress else logging.ERROR
        if options.ray_address:
            ray.init(address=options.ray_address, logging_level=level, log_to_driver=options.progress)
            log.info(f"ray: joined the cluster at {options.ray_address} ({_describe(ray.cluster_resources())})")
        else:
            # a private local Ray: its notice that token authentication is on asks nothing of the user
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            ray.init(num_cpus=local_cpus(), include_dashboard=False, logging_level=level,
                     log_to_driver=options.progress)
            log.info(f"ray: started a local Ray ({_describe(ray.cluster_resources())})")
    data_ctx = ray.data.DataContext.get_current()
    data_ctx.enable_progress_bars = False
    data_ctx.print_on_execution_start = False
    data_ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    return ray


def _describe(resources: dict[str, float]) -> str:
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    return f"{cpus} CPU{'s' * (cpus != 1)}" + (f", {gpus} GPU{'s' * (gpus != 1)}" if gpus else "")


# ------------------------------------------------------------------------------------------- actors
@dataclass(frozen=True)
class ActorPlan:
    """How many actors, what each asks Ray for, its torch threads, and the device it is given."""

    actors: int
    num_cpus: float
    num_gpus: float
    threads: int
    device: Any

    def describe(self) -> str:
        each = f"1 GPU and {self.num_cpus:g} CPU" if self.num_gpus else f"{self.num_cpus:g} CPU"
        return f"{self.actors} actor{'s' * (self.actors != 1)}, each {each}, {self.threads} torch thread" \
               f"{'s' * (self.threads != 1)}"


def _wants_cpu(device: Any) -> bool:
    return str(device).split(":")[0] == "cpu"


def plan_actors(options: RuntimeOptions, cpus: float, gpus: float, n_items: int) -> ActorPlan:
    """The actor pool for ``n_items`` batches on a cluster with ``cpus`` CPUs and ``gpus`` GPUs.

    GPUs (and a device other than ``cpu``): ``workers`` actors (default: one per GPU), each with one GPU
    (its device: that GPU, seen as ``cuda``) and ``worker_threads`` CPUs (default 1). Else CPU actors:
    ``worker_threads`` threads each (default: the CPUs shared among ``workers``, else 1) and ``workers``
    of them (default: as many as the CPUs hold).
    """
    n_items = max(1, n_items)
    if gpus >= 1 and not _wants_cpu(options.device):
        threads = options.worker_threads or 1
        actors = options.workers or int(gpus)
        device = "cuda" if str(options.device).startswith("cuda") else options.device
        return ActorPlan(min(actors, n_items), float(threads), 1.0, threads, device)
    cpus = max(1, int(cpus))
    if options.worker_threads:
        threads = options.worker_threads
        actors = options.workers or max(1, cpus // threads)
    elif options.workers:
        actors, threads = options.workers, max(1, cpus // options.workers)
    else:
        actors, threads = cpus, 1
    return ActorPlan(min(actors, n_items), float(threads), 0.0, threads, options.device)


class _Worker:
    """One actor of the pool: a context rebuilt from the run's options (one model) and the job's computation,
    built once; each call computes (and stores) the planned batches it is handed.

    A failure while building is kept and reported by the first call (Ray Data would retry a failing
    constructor instead of saying what went wrong)."""

    def __init__(self, options: RuntimeOptions, job: Any, cache_dir: str, threads: int, expect: dict[str, str]):
        os.environ["DATAWINNOW_CACHE"] = cache_dir  # this process's cache: stores, adapters, kernels
        self.error: bytes = b""
        try:
            import torch

            torch.set_num_threads(threads)
            if not options.progress:
                from ..logs import silence_libraries

                silence_libraries()
            from .context import Context

            ctx = Context.from_options(options)
            self.run = job.bind(ctx)
            check_identities(ctx, expect)
        except Exception as e:  # noqa: BLE001 - reported to the driver by __call__
            self.error = pack_error(e)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out, err = [], []
        for payload in batch["payload"]:
            if self.error:
                out.append(b"")
                err.append(self.error)
                continue
            try:
                out.append(self.run(bytes(payload)))
                err.append(b"")
            except Exception as e:  # noqa: BLE001 - raised again in the driver
                out.append(b"")
                err.append(pack_error(e))
        return {"i": list(batch["i"]), "out": out, "err": err}


def check_identities(ctx, expect: dict[str, str]) -> None:
    """The resources a worker loaded must be the ones the driver loaded (same files, dtype, adapter)."""
    got = ctx.loaded_identities()
    for name, want in expect.items():
        if name in got and got[name] != want:
            raise ConfigError(f"a Ray worker on {socket.gethostname()} loaded the {name} {got[name]}, while this "
                              f"process uses {want}: every node needs the same files at the same path (a shared "
                              f"filesystem) and the same library versions")


def pack_error(error: BaseException) -> bytes:
    """The exception, pickled with its traceback text (an unpicklable one becomes a RuntimeError with its text)."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        return pickle.dumps((error, text))
    except Exception:  # noqa: BLE001 - e.g. an exception holding a lock or a model
        return pickle.dumps((RuntimeError(f"{type(error).__name__}: {error}"), text))


def unpack_error(data: bytes) -> BaseException:
    error, text = pickle.loads(data)
    if hasattr(error, "add_note"):
        error.add_note(f"raised in a Ray worker:\n{text}")
    return error


@dataclass(frozen=True)
class RowsJob:
    """A :func:`~.runner.run_cached` computation: records in (JSON), stamped rows stored and returned (JSON)."""

    recipe: Recipe
    scorer: str
    params: dict[str, Any]
    identity: str | None
    use_cache: bool
    cache_dir: str

    def bind(self, ctx) -> Callable[[bytes], bytes]:
        compute = self.recipe.build(ctx)
        store = ScoreStore(self.scorer, self.params, self.identity, root=Path(self.cache_dir)) if self.use_cache else None

        def run(payload: bytes) -> bytes:
            records = [Record(**d) for d in json.loads(payload)]
            stamped = finish_batch(records, compute(records), store)
            return json.dumps(stamped, ensure_ascii=False, default=_json_default).encode("utf-8")

        return run


@dataclass(frozen=True)
class CallsJob:
    """A :class:`~.executor.CallWork` computation: pickled arguments in, the pickled result out."""

    recipe: Recipe

    def bind(self, ctx) -> Callable[[bytes], bytes]:
        compute = self.recipe.build(ctx)
        return lambda payload: pickle.dumps(compute(*pickle.loads(payload)))


# ----------------------------------------------------------------------------------------- executor
class RayExecutor(Executor):
    """Runs batches (and kernel blocks) in Ray actors; see the module docstring."""

    name = "ray"
    remote = True

    def __init__(self, options: RuntimeOptions):
        self.options = options
        self._local = LocalExecutor()

    def run(self, work: BatchWork, store: ScoreStore | None) -> Iterator[list[dict[str, Any]]]:
        if work.recipe is None or work.options is None:
            log.info(f"{work.scorer}: computed in this process, not on Ray ({_why_local(work.recipe)})")
            yield from self._local.run(work, store)
            return
        root = work.cache_dir or str(cache_root())
        job = RowsJob(work.recipe, work.scorer, work.params, work.identity, work.use_cache, root)
        payloads = [json.dumps([work.records[i].to_dict() for i in idx], ensure_ascii=False).encode("utf-8")
                    for idx in work.batches]
        for _, out in self._map(work.scorer, "batch", job, payloads, work.options, work.expect, root):
            yield json.loads(out)

    def run_calls(self, work: CallWork) -> Iterator[tuple[int, Any]]:
        if work.recipe is None or work.options is None:
            log.info(f"{work.name}: computed in this process, not on Ray ({_why_local(work.recipe)})")
            yield from self._local.run_calls(work)
            return
        root = work.cache_dir or str(cache_root())
        payloads = [pickle.dumps(tuple(args)) for args in work.calls]
        for k, out in self._map(work.name, work.unit, CallsJob(work.recipe), payloads, work.options, work.expect,
                                root):
            yield k, pickle.loads(out)

    def _map(self, name: str, unit: str, job: Any, payloads: list[bytes], options: RuntimeOptions,
             expect: dict[str, str], cache_dir: str) -> Iterator[tuple[int, bytes]]:
        """``(index, output)`` of every payload, as the actors finish them."""
        if not payloads:
            return
        ray = connect(self.options)
        resources = ray.cluster_resources()
        plan = plan_actors(options, resources.get("CPU", 1), resources.get("GPU", 0), len(payloads))
        worker_options = options.replace(executor="local", progress=False, device=plan.device)
        ds = ray.data.from_items([{"i": k, "payload": p} for k, p in enumerate(payloads)],
                                 override_num_blocks=len(payloads))
        mapped = _map_batches(ds, ray, plan, dict(options=worker_options, job=job, cache_dir=str(cache_dir),
                                                   threads=plan.threads, expect=dict(expect)))
        units = unit if len(payloads) == 1 else (unit + "es" if unit.endswith("ch") else unit + "s")
        log.info(f"{name}: {len(payloads)} {units} on Ray, {plan.describe()}")
        for row in mapped.iter_rows():
            if row["err"]:
                raise unpack_error(row["err"])
            yield int(row["i"]), row["out"]


def _map_batches(ds, ray, plan: ActorPlan, constructor: dict[str, Any]):
    """``ds.map_batches`` through a fixed pool of :class:`_Worker` actors, one planned batch per call.

    Actors are not restarted (``max_restarts=0``): a lost actor fails the run, whose finished batches are
    in the cache; Ray Data's default restarts cannot bring back an actor whose constructor arguments
    went out of scope (ray-project/ray#53727) and log an error for every pool.
    """
    extra: dict[str, Any] = {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(ds.map_batches).parameters.values()):
        extra["max_restarts"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the remote-args keywords, deprecated in Ray 2.60
        return ds.map_batches(_Worker, fn_constructor_kwargs=constructor, batch_size=1, batch_format="numpy",
                              compute=ray.data.ActorPoolStrategy(size=plan.actors), num_cpus=plan.num_cpus,
                              num_gpus=plan.num_gpus or None, **extra)


def _why_local(recipe: Recipe | None) -> str:
    if recipe is None:
        return "it has no recipe for another process"
    return "a resource was handed over as an object that the options cannot name"


def ray_executor(options: RuntimeOptions) -> RayExecutor:
    """The Ray executor for these options (Ray itself starts on the first batch)."""
    import_ray()
    return RayExecutor(options)
