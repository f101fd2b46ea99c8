"""The sentence embedder: sentence-transformers, with all-MiniLM-L6-v2 embedded as the default."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ConfigError
from .device import pick_device
from .embedded import EMBEDDER_ALIASES, minilm_dir, minilm_identity
from .hub import resolve_model


class Embedder:
    """Unit-normalised float32 sentence embeddings."""

    def __init__(self, model, identity: str):
        self.model = model
        self.identity = identity

    @classmethod
    def load(cls, name: str | None = None, *, device: str | None = "auto") -> "Embedder":
        from sentence_transformers import SentenceTransformer

        dev = str(pick_device(device))
        if name in EMBEDDER_ALIASES:
            path, ident, local = str(minilm_dir()), minilm_identity(), True
        else:
            src = resolve_model(str(name), "embedder", marker="modules.json")
            path, ident, local = src.path, str(name), src.local_only
        try:
            model = SentenceTransformer(path, device=dev, local_files_only=local)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load embedder '{name}': {e}") from None
        return cls(model, ident)

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=progress)
        return np.asarray(emb, dtype=np.float32)
