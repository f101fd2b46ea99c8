"""Cost accounting: wall time, forward/backward token counts and the FLOPs they imply.

Tokens are counted by a forward pre-hook on each torch model's backbone (the module that runs the
transformer layers: every scoring call, every generation step and every training step goes through
it), so no backend needs to know about it:

- a call's tokens are the *new* positions it processes: the attention mask's last ``seq_len``
  columns summed (padding is not a token; a generation step with a KV cache counts its one new
  token per sequence, not the whole past), or ``batch x seq_len`` when there is no mask;
- a call with gradients enabled (training) counts its tokens as forward *and* backward tokens.

FLOPs use the standard dense estimate: ``2 x N x tokens`` forward and ``4 x N x tokens`` backward
(so a training token costs ``6 N``, three times a forward token), with ``N`` the parameter count of
the model that processed the token. The sentence embedder (sentence-transformers calls its model's
``forward`` directly, past any hook) is wrapped instead: each ``encode`` counts its texts' tokens with
the embedder's own tokenizer and ``N``. Attention's quadratic term is left out, as in the usual
``6 N D`` estimate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from ..backends.embedder import Embedder
from ..runtime.context import Context


@dataclass
class Cost:
    seconds: float = 0.0
    fwd_tokens: int = 0
    bwd_tokens: int = 0
    flops: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "fwd_tokens": int(self.fwd_tokens),
                "bwd_tokens": int(self.bwd_tokens), "flops": float(self.flops)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Cost":
        d = d or {}
        return cls(float(d.get("seconds", 0.0)), int(d.get("fwd_tokens", 0)), int(d.get("bwd_tokens", 0)),
                   float(d.get("flops", 0.0)))

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.seconds + other.seconds, self.fwd_tokens + other.fwd_tokens,
                    self.bwd_tokens + other.bwd_tokens, self.flops + other.flops)


def count_params(module: torch.nn.Module) -> int:
    """All parameters of a model (LoRA's few extra ones included when present)."""
    return int(sum(p.numel() for p in module.parameters()))


def backbone_of(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer body of a causal LM (through a peft wrapper); the module itself otherwise."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    prefix = getattr(m, "base_model_prefix", None)
    body = getattr(m, prefix, None) if prefix else None
    return body if isinstance(body, torch.nn.Module) else m


def call_tokens(args: tuple, kwargs: dict[str, Any]) -> int:
    """The new (non-padding) positions one forward call processes."""
    ids = kwargs.get("input_ids")
    if ids is None and args and isinstance(args[0], torch.Tensor):
        ids = args[0]
    if ids is None:
        ids = kwargs.get("inputs_embeds")
        if ids is None:
            return 0
        shape = ids.shape[:2]
    else:
        shape = ids.shape if ids.dim() == 2 else (1, ids.shape[-1])
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        return int(mask[:, -shape[1]:].sum().item())
    return int(shape[0] * shape[1])


class TokenMeter:
    """Counts tokens through forward pre-hooks on every model it is attached to.

    ``attach(module, n_params=None)`` hooks a model's backbone once (attaching twice is a no-op);
    ``snapshot()`` returns the running totals, so a stage's cost is the difference of two snapshots.
    """

    def __init__(self):
        self.fwd_tokens = 0
        self.bwd_tokens = 0
        self.flops = 0.0
        self._hooked: dict[int, Any] = {}

    def attach(self, model: torch.nn.Module, n_params: int | None = None) -> None:
        body = backbone_of(model)
        if id(body) in self._hooked:
            return
        n = int(n_params if n_params is not None else count_params(model))

        def hook(_module, args, kwargs):
            t = call_tokens(args, kwargs)
            self.fwd_tokens += t
            self.flops += 2.0 * n * t
            if torch.is_grad_enabled() and _module.training:
                self.bwd_tokens += t
                self.flops += 4.0 * n * t

        self._hooked[id(body)] = (body.register_forward_pre_hook(hook, with_kwargs=True), body)

    def attach_lm(self, lm) -> None:
        self.attach(lm.model)

    def add_forward(self, tokens: int, n_params: int) -> None:
        """Count tokens processed outside a hooked module (the sentence embedder)."""
        self.fwd_tokens += tokens
        self.flops += 2.0 * n_params * tokens

    def detach_all(self) -> None:
        for handle, _ in self._hooked.values():
            handle.remove()
        self._hooked.clear()

    def snapshot(self) -> tuple[float, int, int, float]:
        return time.perf_counter(), self.fwd_tokens, self.bwd_tokens, self.flops

    def since(self, snap: tuple[float, int, int, float]) -> Cost:
        t0, f0, b0, fl0 = snap
        return Cost(time.perf_counter() - t0, self.fwd_tokens - f0, self.bwd_tokens - b0, self.flops - fl0)


class MeteredEmbedder(Embedder):
    """An embedder whose ``encode`` counts the tokens it embeds (sentence-transformers calls its model's
    ``forward`` directly, past any hook): each text's tokens up to the model's max sequence length."""

    def __init__(self, inner: Embedder, meter: TokenMeter):
        self.inner, self.meter = inner, meter
        self.model, self.identity = getattr(inner, "model", None), getattr(inner, "identity", type(inner).__name__)
        self.n_params = count_params(self.model) if isinstance(self.model, torch.nn.Module) else 0
        tok = getattr(self.model, "tokenizer", None)
        self._tokenizer = tok if callable(tok) else None
        self._max_len = int(getattr(self.model, "max_seq_length", 0) or 0) or None

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts, *, batch_size: int = 32, progress: bool = False):
        if self._tokenizer is not None and self.n_params and len(texts):
            ids = self._tokenizer(list(texts), add_special_tokens=True, truncation=self._max_len is not None,
                                  max_length=self._max_len)["input_ids"]
            self.meter.add_forward(sum(len(x) for x in ids), self.n_params)
        return self.inner.encode(texts, batch_size=batch_size, progress=progress)


class MeteredContext(Context):
    """A :class:`Context` whose model, embedder and local judge are counted by a :class:`TokenMeter`
    as soon as they are loaded (cheap methods still load nothing)."""

    def __init__(self, meter: TokenMeter, **kwargs: Any):
        super().__init__(**kwargs)
        self.meter = meter

    @property
    def model(self):
        lm = Context.model.fget(self)
        self.meter.attach_lm(lm)
        return lm

    @property
    def embedder(self):
        emb = Context.embedder.fget(self)
        if not isinstance(emb, MeteredEmbedder):
            emb = self._embedder = MeteredEmbedder(emb, self.meter)
        return emb

    @property
    def judge(self):
        judge = Context.judge.fget(self)
        lm = getattr(judge, "lm", None)
        if lm is not None and hasattr(lm, "model"):
            self.meter.attach_lm(lm)
        return judge


# ------------------------------------------------------------------------------------- estimates
# Forward passes over the pool that each method's selection makes, for the dry-run estimate only
# (the run itself measures). Counted from each method's recipe: ifd scores the response with and
# without its instruction (2), cherry adds the warm-up and the expert re-scoring (about 4), less a
# warm-up of 5% for 4 epochs and per-sample gradients (about 3 incl. backward), delift's utility
# kernel re-scores each sample with k in-context examples (k + 1 with the default k = 10).
SELECTION_PASSES: dict[str, float] = {
    "random": 0.0, "longest": 0.0, "ifd": 2.0, "cherry": 4.0, "less": 3.0, "alpagasus": 1.5, "deita": 3.0,
    "selectit": 3.0, "rds": 1.0, "delift": 11.0, "delift-task": 11.0, "delift-continual": 11.0,
    "delift-se": 0.0, "delift-se-task": 0.0, "delift-se-continual": 0.0,
}
# tokens/s used when nothing has been measured on this machine yet (SmolLM2-135M on a 2-core CPU, bf16)
ASSUMED_RATES = {"inference": 1500.0, "train": 150.0}


def human_flops(x: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if x >= scale:
            return f"{x / scale:.1f} {unit}"
    return f"{x:.0f} FLOP"


def human_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
