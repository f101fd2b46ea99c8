"""A 2-D map of the pool's sentence embeddings with the selected records highlighted (DELIFT's figure).

The projection is UMAP when ``umap-learn`` is installed, otherwise PCA (or t-SNE on request) from
scikit-learn; matplotlib is needed to draw (``pip install 'datawinnow[plot]'``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..data.record import Dataset
from ..errors import ConfigError, MissingDependencyError

REDUCERS = ("auto", "umap", "pca", "tsne")


def project_2d(emb: np.ndarray, reducer: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """(n x 2 coordinates, the reducer used)."""
    if reducer not in REDUCERS:
        raise ConfigError(f"plot reducer must be one of {', '.join(REDUCERS)}, got '{reducer}'")
    n = len(emb)
    if n < 3:
        out = np.zeros((n, 2))
        out[:, 0] = np.arange(n)
        return out, "none"
    if reducer in ("auto", "umap"):
        try:
            import umap  # noqa: F401
        except ImportError:
            if reducer == "umap":
                raise MissingDependencyError("umap-learn", "plot", "a UMAP map (--plot with reducer umap)") from None
        else:
            from umap import UMAP

            return UMAP(n_components=2, random_state=seed, n_neighbors=min(15, n - 1)).fit_transform(emb), "umap"
    if reducer == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, random_state=seed, perplexity=min(30.0, (n - 1) / 3), init="pca").fit_transform(emb), "tsne"
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(emb), "pca"


def plot_selection(dataset: Dataset, selected: Sequence[str], path: str, *, ctx: Any = None,
                   embeddings: np.ndarray | None = None, reducer: str = "auto", title: str | None = None,
                   seed: int = 0, embed_text: str = "prompt_response") -> str:
    """Draw the map to ``path`` (format from its suffix: .png, .pdf, .svg); returns the reducer used.

    Embeddings come from ``embeddings`` or are computed (and cached) with ``ctx.embedder``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot", "drawing a selection map (--plot)") from None
    if embeddings is None:
        if ctx is None:
            raise ConfigError("plot_selection needs embeddings or a context with an embedder")
        from ..kernels.embedding import embed_records

        embeddings = embed_records(dataset, ctx, embed_text)
    xy, used = project_2d(np.asarray(embeddings, dtype=np.float32), reducer, seed)
    chosen = set(selected)
    mask = np.array([rid in chosen for rid in dataset.ids], dtype=bool)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    ax.scatter(xy[~mask, 0], xy[~mask, 1], s=10, c="#b0b0b0", alpha=0.6, label=f"pool ({int((~mask).sum())})")
    ax.scatter(xy[mask, 0], xy[mask, 1], s=18, c="#d62728", alpha=0.9, label=f"selected ({int(mask.sum())})")
    ax.set_title(title or f"selected {int(mask.sum())} of {len(mask)} ({used.upper()} of sentence embeddings)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", frameon=False)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot write the plot to {path}: {e}") from None
    finally:
        plt.close(fig)
    return used
