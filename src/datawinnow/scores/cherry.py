"""Cherry LLM's full pipeline: IFD scored by a "pre-experienced" model.

1. Embed every instruction (mean last hidden state of the causal LM) and compute its perplexity
   (:mod:`.instruction_stats`).
2. k-means (scikit-learn, seeded) into ``n_clusters`` clusters.
3. From each cluster take ``per_cluster`` samples (seeded) whose instruction perplexity lies
   between the cluster's 25th and 75th percentiles (numpy's linear interpolation).
4. A brief LoRA fine-tune on those samples (:mod:`.lora_warmup`): the pre-experienced model.
5. IFD of every sample with that model (:mod:`.ifd`; loss_ratio by default, as in Cherry's code; both
   losses over the same response tokens, as Cherry's code aligns them on long samples).

Sizes for small pools (``n_clusters=auto``): k = clamp(n // 50, 1, 100), so Cherry's 100 clusters
x 10 samples from 5,000 samples up (1,000 of Alpaca's 52k), and about one cluster per 50 samples
below that (at most ~20% of a small pool is used for the pre-experience). A cluster whose band
holds fewer than ``per_cluster`` samples gives all of them; one whose band is empty (one or two
members) gives its member closest to the cluster's median perplexity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.record import Dataset
from ..errors import ConfigError
from ..registry import SCORERS
from .base import Scorer, ScoreTable
from ..runtime.context import Context
from .ifd import VARIANTS, ifd_losses, ifd_value, resolve_empty_prompt
from .instruction_stats import instruction_stats
from .lora_warmup import WarmupConfig, describe, lora_warmup

MAX_CLUSTERS = 100
SAMPLES_PER_CLUSTER_OF = 50  # auto: one cluster per this many samples


def cherry_sizes(n: int, n_clusters: Any = "auto", per_cluster: Any = 10) -> tuple[int, int]:
    """(clusters, samples per cluster) for a pool of ``n`` records."""
    try:
        m = int(per_cluster)
    except (TypeError, ValueError):
        raise ConfigError(f"cherry: per_cluster must be an integer >= 1, got {per_cluster!r}") from None
    if m < 1:
        raise ConfigError(f"cherry: per_cluster must be an integer >= 1, got {per_cluster!r}")
    if n_clusters in (None, "auto"):
        k = min(MAX_CLUSTERS, max(1, n // SAMPLES_PER_CLUSTER_OF))
    else:
        try:
            k = int(n_clusters)
        except (TypeError, ValueError):
            raise ConfigError(f"cherry: n_clusters must be 'auto' or an integer >= 1, got {n_clusters!r}") from None
        if k < 1:
            raise ConfigError(f"cherry: n_clusters must be 'auto' or an integer >= 1, got {n_clusters!r}")
    return min(k, max(1, n)), m


def kmeans_labels(embeddings: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Cluster label per row (scikit-learn KMeans, k-means++ initialisation, seeded)."""
    from sklearn.cluster import KMeans

    if k <= 1:
        return np.zeros(len(embeddings), dtype=np.int64)
    km = KMeans(n_clusters=k, random_state=int(seed), n_init=10)
    return km.fit_predict(np.asarray(embeddings, dtype=np.float64)).astype(np.int64)


def band_sample(labels: np.ndarray, ppl: np.ndarray, per_cluster: int, low: float = 25.0, high: float = 75.0,
                seed: int = 0) -> list[int]:
    """Per cluster, up to ``per_cluster`` random members with low-th <= perplexity <= high-th percentile.

    Returns sorted indices. An empty band gives the member nearest the cluster's median perplexity.
    """
    if not 0.0 <= low <= high <= 100.0:
        raise ConfigError(f"cherry: percentiles must satisfy 0 <= low <= high <= 100, got {low}, {high}")
    rng = np.random.default_rng([int(seed), 7])
    picked: list[int] = []
    for c in np.unique(labels):
        members = np.flatnonzero((labels == c) & ~np.isnan(ppl))
        if len(members) == 0:
            continue
        vals = ppl[members]
        lo, hi = np.percentile(vals, [low, high])
        band = members[(vals >= lo) & (vals <= hi)]
        if len(band) == 0:
            med = np.median(vals)
            band = members[[int(np.argmin(np.abs(vals - med)))]]
        if len(band) > per_cluster:
            band = rng.choice(band, size=per_cluster, replace=False)
        picked.extend(int(i) for i in band)
    return sorted(picked)


@SCORERS.register
class CherryScorer(Scorer):
    name = "cherry"
    # Not per record: the pre-experienced model is warmed up on samples picked by k-means over the whole pool.
    per_record = False
    description = ("Cherry LLM IFD with the pre-experienced model: k-means on instruction embeddings, mid-perplexity "
                   "samples per cluster, brief LoRA fine-tune, then IFD with it.")
    defaults = {"variant": "loss_ratio", "empty_prompt": "auto", "n_clusters": "auto", "per_cluster": 10,
                "low_pct": 25.0, "high_pct": 75.0, "embed_text": "bare", "epochs": 1, "lr": 2e-4,
                "train_batch_size": 4, "lora_r": 8, "lora_alpha": 32, "target_modules": "q_proj,k_proj,v_proj,o_proj"}

    def warmup_config(self, seed: int) -> WarmupConfig:
        p = self.params
        return WarmupConfig(epochs=int(p["epochs"]), lr=float(p["lr"]), batch_size=int(p["train_batch_size"]),
                            lora_r=int(p["lora_r"]), lora_alpha=int(p["lora_alpha"]),
                            target_modules=str(p["target_modules"]), schedule="linear", seed=int(seed))

    def experienced_indices(self, dataset: Dataset, ctx: Context) -> tuple[list[int], np.ndarray, np.ndarray, dict]:
        """(indices trained on, cluster labels, instruction perplexity, info) — steps 1-3."""
        k, m = cherry_sizes(len(dataset), self.params["n_clusters"], self.params["per_cluster"])
        emb, ppl, info = instruction_stats(dataset, ctx, str(self.params["embed_text"]))
        labels = kmeans_labels(emb, k, ctx.seed)
        picked = band_sample(labels, ppl, m, float(self.params["low_pct"]), float(self.params["high_pct"]), ctx.seed)
        return picked, labels, ppl, {"clusters": k, "per_cluster": m, "embedding": info}

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        variant = self.params["variant"]
        if variant not in VARIANTS:
            raise ConfigError(f"cherry: variant must be one of {', '.join(VARIANTS)}, got '{variant}'")
        empty = resolve_empty_prompt(variant, self.params["empty_prompt"])
        cfg = self.warmup_config(ctx.seed)
        cfg.check()
        picked, labels, ppl, info = self.experienced_indices(dataset, ctx)
        warm = lora_warmup(ctx.model, [dataset[i] for i in picked], cfg, use_cache=ctx.use_cache,
                           progress=ctx.progress, desc="cherry pre-experience")
        expert = Context(model=warm.causal_lm(), batch_size=ctx.batch_size, use_cache=ctx.use_cache,
                         progress=ctx.progress, seed=ctx.seed)
        lc, lu, nt, ifd_info = ifd_losses(dataset, expert, empty)
        ifd = np.array([ifd_value(c, u, variant) for c, u in zip(lc, lu)], dtype=np.float64)
        experienced = np.zeros(len(dataset), dtype=np.int64)
        experienced[picked] = 1
        parts = {"loss_conditioned": lc, "loss_unconditioned": lu, "n_tokens": nt, "cluster": labels,
                 "instruction_ppl": ppl, "experienced": experienced}
        info.update({"ifd": ifd_info, "variant": variant, "empty_prompt": empty, "experienced": len(picked),
                     "experienced_ids": [dataset[i].id for i in picked], "warmup": describe(warm),
                     "model": expert.model.identity})
        return ScoreTable(dataset.ids, ifd, parts, info=info)
