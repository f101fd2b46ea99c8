"""DELIFT: data selection for the three fine-tuning stages, on the utility or the embedding kernel.

=====================  ==========================================  =========================
method                 objective (SPEC section 3)                   kernel
=====================  ==========================================  =========================
delift                 facility location on the pool                utility (teacher-forced)
delift-task            FL mutual information with ``--target`` Q    utility
delift-continual       FL conditional gain given ``--existing`` P   utility
delift-se              facility location                            sentence embeddings
delift-se-task         FL mutual information                        sentence embeddings
delift-se-continual    FL conditional gain                          sentence embeddings
=====================  ==========================================  =========================

Kernels are oriented ``s[i, j]``: row ``i`` represented, column ``j`` candidate. For the utility
kernel the represented point is the *target* and the candidate the in-context *example*:

- pool kernel ``s[i, j] = sim(UF[i, j])`` (pool targets, pool examples);
- stage 2 query kernel ``s_Q[i, q] = sim(UF[q, i])``: the utility of pool sample ``i`` for target
  sample ``q``;
- stage 3 kernel ``s_P[i, p] = sim(UF[i, p])``: how well already-learned sample ``p`` serves pool
  sample ``i``.

``sim`` is ``minmax`` (DELIFT's code, default) or ``clip`` (the paper), applied jointly to the
matrices of one objective. DELIFT (SE) uses ``(cos + 1) / 2``. Budget 30% and lazy greedy by
default; the greedy does not stop at zero gain.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from ...data.record import Dataset
from ...errors import ConfigError
from ...registry import METHODS
from ...runtime.context import Context
from ..base import Method, Selection
from ..submodular import (
    FacilityLocation,
    FacilityLocationConditionalGain,
    FacilityLocationMutualInformation,
    OPTIMIZERS,
    maximize,
)

COMMON = {"kernel": "dense", "k": 10, "optimizer": "lazy", "epsilon": 0.1, "embed_text": "prompt_response",
          "knn_backend": "auto", "knn_index": "auto", "nprobe": 16}
UTILITY = {**COMMON, "similarity": "minmax", "block_size": "auto", "storage": "float32"}


def require_source(ctx: Context, key: str, option: str, method: str) -> Dataset:
    ds = ctx.sources.get(key)
    if ds is None:
        raise ConfigError(f"method '{method}' needs {option} SRC (the {'target-task samples' if key == 'target' else 'data the model was already tuned on'})")
    if len(ds) == 0:
        raise ConfigError(f"method '{method}': the {option} source is empty")
    return ds


class DeliftMethod(Method):
    """Shared recipe: build the kernels of one objective, maximise it greedily, report each pick's gain."""

    kernel_kind: ClassVar[str] = "utility"  # or "embedding"
    objective: ClassVar[str] = "fl"  # "fl", "flmi" or "flcg"
    default_budget = 0.3
    param_types = {"knn_index": "str"}  # a text (its default "auto" would also take a number)

    @classmethod
    def is_stochastic(cls, params: dict[str, Any]) -> bool:
        return params.get("optimizer") == "stochastic"  # stochastic greedy samples candidates with the seed

    # ------------------------------------------------------------------ options
    def _check(self) -> None:
        from ...kernels.knn import INDEXES

        p = self.params
        if p["kernel"] not in ("dense", "sparse"):
            raise ConfigError(f"{self.name}: kernel must be dense or sparse, got '{p['kernel']}'")
        if not isinstance(p["k"], int) or isinstance(p["k"], bool) or p["k"] < 1:
            raise ConfigError(f"{self.name}: k must be a positive integer, got {p['k']!r}")
        if p["knn_index"] not in INDEXES:
            raise ConfigError(f"{self.name}: knn_index must be one of {', '.join(INDEXES)}, got '{p['knn_index']}'")
        if not isinstance(p["nprobe"], int) or isinstance(p["nprobe"], bool) or p["nprobe"] < 1:
            raise ConfigError(f"{self.name}: nprobe must be a positive integer, got {p['nprobe']!r}")
        if p["optimizer"] not in OPTIMIZERS:
            raise ConfigError(f"{self.name}: optimizer must be one of {', '.join(OPTIMIZERS)}, got '{p['optimizer']}'")
        if not isinstance(p["epsilon"], (int, float)) or not 0 < p["epsilon"] < 1:
            raise ConfigError(f"{self.name}: epsilon must be in (0, 1), got {p['epsilon']!r}")
        for key in ("eta", "nu"):
            if key in p and (not isinstance(p[key], (int, float)) or p[key] < 0):
                raise ConfigError(f"{self.name}: {key} must be a number >= 0, got {p[key]!r}")
        if self.kernel_kind == "utility":
            if p["similarity"] not in ("minmax", "clip"):
                raise ConfigError(f"{self.name}: similarity must be minmax or clip, got '{p['similarity']}'")
            if p["block_size"] != "auto" and (not isinstance(p["block_size"], int) or p["block_size"] < 1):
                raise ConfigError(f"{self.name}: block_size must be auto or a positive integer, got "
                                  f"{p['block_size']!r}")

    # ------------------------------------------------------------------ kernels
    def _embeddings(self, ds: Dataset, ctx: Context, memo: dict) -> np.ndarray:
        from ...kernels.embedding import embed_records

        key = id(ds)
        if key not in memo:
            memo[key] = embed_records(ds, ctx, self.params["embed_text"])
        return memo[key]

    def _kernel(self, targets: Dataset, examples: Dataset, ctx: Context, memo: dict) -> tuple[Any, dict]:
        """Raw candidate-major kernel ``[len(examples), len(targets)]`` and its info."""
        from ...kernels.embedding import embedding_kernel, neighbours
        from ...kernels.knn import plan_index

        p = self.params
        sparse = p["kernel"] == "sparse"
        # the k-NN search of the sparse modes: exact or approximate (knn_index auto resolved for these sizes)
        knn_plan = plan_index(p["knn_index"], len(targets), len(examples), backend=p["knn_backend"],
                              nprobe=p["nprobe"]).as_dict() if sparse else None
        search = {"backend": p["knn_backend"], "index": p["knn_index"], "nprobe": p["nprobe"]}
        if self.kernel_kind == "embedding":
            t0 = time.perf_counter()
            m = embedding_kernel(self._embeddings(targets, ctx, memo), self._embeddings(examples, ctx, memo),
                                 mode=p["kernel"], k=p["k"], progress=ctx.progress, **search)
            info = {"kernel": "embedding", "mode": p["kernel"], "seconds": round(time.perf_counter() - t0, 3),
                    "embedder": ctx.embedder.identity}
            return m, {**info, "knn": knn_plan} if sparse else info
        from ...kernels.utility import utility_kernel

        nb = None
        if sparse:
            nb, _ = neighbours(self._embeddings(targets, ctx, memo), self._embeddings(examples, ctx, memo), p["k"],
                               progress=ctx.progress, **search)
        uk = utility_kernel(ctx.model, targets, examples, mode=p["kernel"], neighbour_idx=nb,
                            batch_size=ctx.batch_size, block_size=None if p["block_size"] == "auto" else p["block_size"], storage=p["storage"],
                            use_cache=ctx.use_cache, progress=ctx.progress, batch_tokens=ctx.batch_tokens or "auto",
                            ctx=ctx, neighbours_from=knn_plan)
        return uk.matrix, {**uk.info, "knn": knn_plan} if sparse else uk.info

    # ------------------------------------------------------------------ select
    def select(self, dataset: Dataset, budget: int, ctx: Context) -> Selection:
        self._check()
        p = self.params
        aux_ds = None
        if self.objective == "flmi":
            aux_ds = require_source(ctx, "target", "--target", self.name)
        elif self.objective == "flcg":
            aux_ds = require_source(ctx, "existing", "--existing", self.name)
        memo: dict = {}
        t0 = time.perf_counter()
        pool_k, pool_info = self._kernel(dataset, dataset, ctx, memo)
        mats, infos = [pool_k], {"pool": pool_info}
        if self.objective == "flmi":
            # s_Q[i, q] = sim(UF[q, i]): targets = Q, examples = the pool -> [n_pool, |Q|] = rows x queries
            q_k, infos["target"] = self._kernel(aux_ds, dataset, ctx, memo)
            mats.append(q_k)
        elif self.objective == "flcg":
            # s_P[i, p] = sim(UF[i, p]): targets = the pool, examples = P -> [|P|, n_pool] candidate-major
            p_k, infos["existing"] = self._kernel(dataset, aux_ds, ctx, memo)
            mats.append(p_k)
        sim_info: dict[str, Any] = {"similarity": "cosine01"}
        if self.kernel_kind == "utility":
            from ...kernels.similarity import to_similarity

            dirs = [info.get("cache_dir") if isinstance(m, np.memmap) else None
                    for m, info in zip(mats, infos.values())]
            mats, sim_info = to_similarity(mats, p["similarity"], dirs)
        t_kernel = time.perf_counter() - t0

        if self.objective == "fl":
            obj = FacilityLocation(mats[0], transposed=True)
        elif self.objective == "flmi":
            obj = FacilityLocationMutualInformation(mats[0], mats[1], eta=float(p["eta"]), transposed=True,
                                                    query_transposed=False)
        else:
            obj = FacilityLocationConditionalGain(mats[0], mats[1], nu=float(p["nu"]), transposed=True,
                                                  private_transposed=True)
        res = maximize(obj, budget, optimizer=p["optimizer"], epsilon=float(p["epsilon"]), seed=ctx.seed,
                       progress=ctx.progress)
        ids = dataset.ids
        info = {
            "objective": obj.name, "value": res.value, "optimizer": res.optimizer, "evaluations": res.evaluations,
            "seconds_kernel": round(t_kernel, 3), "seconds_optimizer": round(res.seconds, 3),
            "kernels": infos, **sim_info, **res.info,
        }
        if aux_ds is not None:
            info["reference_set"] = {"size": len(aux_ds), "source": aux_ds.path}
        model = ctx.model_identity() if self.kernel_kind == "utility" else ctx.embedder.identity
        return Selection(method=self.name, params=dict(p), budget=budget, selected=[ids[j] for j in res.picks],
                         gains=[float(g) for g in res.gains], info=info, model=model)


@METHODS.register
class Delift(DeliftMethod):
    name = "delift"
    description = "DELIFT stage 1 (instruction tuning): facility location on the model's utility kernel."
    defaults = dict(UTILITY)


@METHODS.register
class DeliftTask(DeliftMethod):
    name = "delift-task"
    description = "DELIFT stage 2 (task-specific): FL mutual information with --target samples, utility kernel."
    objective = "flmi"
    defaults = {**UTILITY, "eta": 1.0}


@METHODS.register
class DeliftContinual(DeliftMethod):
    name = "delift-continual"
    description = "DELIFT stage 3 (continual): FL conditional gain given --existing data, utility kernel."
    objective = "flcg"
    defaults = {**UTILITY, "nu": 1.0}


@METHODS.register
class DeliftSE(DeliftMethod):
    name = "delift-se"
    description = "DELIFT (SE) stage 1: facility location on sentence-embedding similarity (cos + 1) / 2."
    kernel_kind = "embedding"
    defaults = dict(COMMON)


@METHODS.register
class DeliftSETask(DeliftMethod):
    name = "delift-se-task"
    description = "DELIFT (SE) stage 2: FL mutual information with --target samples, embedding kernel."
    kernel_kind = "embedding"
    objective = "flmi"
    defaults = {**COMMON, "eta": 1.0}


@METHODS.register
class DeliftSEContinual(DeliftMethod):
    name = "delift-se-continual"
    description = "DELIFT (SE) stage 3: FL conditional gain given --existing data, embedding kernel."
    kernel_kind = "embedding"
    objective = "flcg"
    defaults = {**COMMON, "nu": 1.0}
