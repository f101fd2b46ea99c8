"""Per-example LoRA gradients and LESS's Adam-preconditioned update direction.

- :func:`example_gradient`: the gradient of one sample's own completion-only loss (mean token
  cross-entropy over its response) with respect to the LoRA parameters only, i.e. batch size 1,
  flattened in the warm-up's parameter order. The model runs in eval mode (no dropout). This is
  the reference path.
- :func:`batch_gradients`: the same per-example gradients for a whole batch from one forward and
  one backward pass. Every LoRA parameter is the weight of a bias-free ``nn.Linear`` (``lora_A``:
  input -> r, ``lora_B``: r -> output, peft's scaling applied after ``lora_B``), and for a linear
  layer y = x W^T the gradient of example b's loss is dL_b/dW = sum_t g_bt^T x_bt, with x_bt the
  layer's input at token t and g_bt the gradient of the loss w.r.t. its output there. Forward hooks
  keep each LoRA layer's input and output; one ``autograd.grad`` of sum_b L_b (each sample's own
  mean loss, so examples do not mix) w.r.t. the outputs gives every g; a batched matmul per layer
  gives every example's gradient (padding masked). For lora_B this is s * sum_t g^T (x A^T), for
  lora_A s * sum_t (g B)^T x: the scaling and B reach lora_A through autograd. It works with any
  attention kernel, costs one batched backward pass, and holds [b, D] gradients on the model's device.
- :func:`adam_direction`: for a training sample, the step Adam would take from the checkpoint's
  moments, without bias correction (LESS): m' = b1 m + (1 - b1) g, v' = b2 v + (1 - b2) g^2,
  Gamma = m' / sqrt(v' + eps). Element-wise, so it runs batched on whatever device g lives on.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..backends.batching import CPU_MAX_PADDING, OomSplitter, plan_batches
from ..backends.causal_lm import Pair
from .lora_warmup import Checkpoint, WarmupResult, collate, completion_loss, completion_losses, training_pair

ACTIVATIONS_PER_LAYER = 24  # hidden-size values kept per token and layer for the backward (an estimate)
CPU_ACTIVATION_BYTES = 2**30
MAX_BATCH_TOKENS = 65536


def flat_state(checkpoint: Checkpoint, names: Sequence[str], which: str) -> torch.Tensor:
    """``exp_avg`` or ``exp_avg_sq`` of every LoRA parameter, flattened in ``names`` order."""
    state = getattr(checkpoint, which)
    return torch.cat([state[n].reshape(-1).float() for n in names])


def example_gradient(result: WarmupResult, record, pair: Pair | None = None) -> torch.Tensor:
    """The flattened float32 gradient of one record's loss w.r.t. the LoRA parameters (on the CPU).

    ``pair``: the record's :func:`~.lora_warmup.training_pair`, when the caller has it already.
    """
    lm = result.base
    model = result.model
    model.eval()
    batch = collate([pair if pair is not None else training_pair(lm, record)], lm.tokenizer.pad_token_id)
    batch = {k: v.to(lm.device) for k, v in batch.items()}
    params = result.parameters()
    with torch.enable_grad():
        loss = completion_loss(model, batch)
        grads = torch.autograd.grad(loss, params)
    return torch.cat([g.reshape(-1).float() for g in grads]).cpu()


def lora_linear_modules(result: WarmupResult) -> list[torch.nn.Linear] | None:
    """The ``nn.Linear`` whose weight each LoRA parameter is (in gradient order), or None when some parameter is
    not such a weight (DoRA magnitudes, embedding LoRA, trained biases): then only the reference path applies."""
    modules = dict(result.model.named_modules())
    out = []
    for name in result.names:
        owner, _, leaf = name.rpartition(".")
        mod = modules.get(owner)
        trained_bias = mod is not None and getattr(mod, "bias", None) is not None and mod.bias.requires_grad
        if leaf != "weight" or not isinstance(mod, torch.nn.Linear) or trained_bias:
            return None
        out.append(mod)
    return out


def batch_gradients(result: WarmupResult, pairs: Sequence[Pair],
                    modules: Sequence[torch.nn.Linear] | None = None) -> torch.Tensor:
    """``[b, D]`` float32 per-example gradients (each pair's own mean response loss) on the model's device.

    ``modules`` is :func:`lora_linear_modules` (computed when not given; it must not be None).
    """
    model = result.model
    model.eval()
    mods = list(modules if modules is not None else lora_linear_modules(result) or [])
    if len(mods) != len(result.names):
        raise ValueError("batch_gradients needs every LoRA parameter to be a bias-free linear weight")
    dev = result.base.device
    batch = {k: v.to(dev) for k, v in collate(pairs, result.base.tokenizer.pad_token_id).items()}
    mask = None
    if len({len(p) for p in pairs}) == 1:  # nothing padded: the unmasked (causal) attention path is faster
        batch["attention_mask"] = None
    else:
        mask = batch["attention_mask"].to(torch.float32).unsqueeze(-1)  # [b, T, 1]
    calls: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {id(m): [] for m in mods}

    def keep(mod, inputs, output):
        calls[id(mod)].append((inputs[0], output))

    handles = [m.register_forward_hook(keep) for m in mods]
    try:
        with torch.enable_grad():
            losses = completion_losses(model, batch)
            recorded = {k: list(v) for k, v in calls.items()}  # the forward's calls (not a checkpointed recompute)
            outputs = [o for m in mods for _, o in recorded[id(m)]]
            grads = iter(torch.autograd.grad(losses.sum(), outputs, allow_unused=True))
    finally:
        for h in handles:
            h.remove()
    rows = []
    for m in mods:
        total = None
        for x, _ in recorded[id(m)]:
            g = next(grads)
            if g is None:
                continue
            g, x = g.float(), x.detach().float()
            if mask is not None:  # zero padding positions in the narrower factor (rank r for LoRA): cheap
                if g.shape[-1] <= x.shape[-1]:
                    g = g * mask
                else:
                    x = x * mask
            part = torch.bmm(g.transpose(1, 2), x)  # [b, out, in]
            total = part if total is None else total + part
        if total is None:
            total = torch.zeros((len(pairs), *m.weight.shape), dtype=torch.float32, device=dev)
        rows.append(total.reshape(len(pairs), -1))
    return torch.cat(rows, dim=1)


def auto_gradient_tokens(result: WarmupResult) -> int:
    """The ``auto`` token budget of a :func:`batch_gradients` pass: the batch whose kept activations (estimated
    as ``ACTIVATIONS_PER_LAYER`` hidden-size values per token and layer) take about 1 GiB on a CPU, a
    quarter of the free memory on CUDA; between 256 and 65,536. Smaller than a forward pass's budget
    (:func:`~datawinnow.backends.batching.auto_batch_tokens`): a backward keeps every layer's activations.

    On a CPU the forward and backward passes of a 100M+ model are compute-bound already at batch size 1,
    and larger batches only add memory traffic (embedded SmolLM2, fp32: 4,096-token batches ran 1.6x
    slower than 512-token ones); a tiny model gets large batches, where per-call overhead dominates.
    """
    config = result.base.model.config
    layers, hidden = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    if not layers or not hidden:
        return 1024
    per_token = ACTIVATIONS_PER_LAYER * int(layers) * int(hidden) * result.base.dtype.itemsize
    dev = result.base.device
    budget = torch.cuda.mem_get_info(dev)[0] // 4 if dev.type == "cuda" else CPU_ACTIVATION_BYTES
    return int(min(MAX_BATCH_TOKENS, max(256, budget // per_token)))


def gradient_batches(result: WarmupResult, lengths: Sequence[int], *, batch_tokens: int | None = None,
                     batch_size: int | None = None) -> list[list[int]]:
    """Length-sorted batches for :func:`batch_gradients`: ``batch_size`` sequences each when given (a fixed
    count), else at most ``batch_tokens`` padded tokens each (None: :func:`auto_gradient_tokens`), on a CPU
    also closed where padding would pass 2% of the real tokens (:mod:`datawinnow.backends.batching`)."""
    if batch_size is not None:
        return plan_batches(lengths, batch_size=batch_size)
    budget = batch_tokens or auto_gradient_tokens(result)
    cpu = result.base.device.type == "cpu"
    return plan_batches(lengths, batch_tokens=budget, max_padding=CPU_MAX_PADDING if cpu else None)


def example_gradients(result: WarmupResult, records, *, vectorized: bool = True, batch_tokens: int | None = None,
                      batch_size: int | None = None, pairs: Sequence[Pair] | None = None) -> torch.Tensor:
    """``[n, D]`` float32 per-example gradients of ``records`` in order: batched (:func:`batch_gradients` over
    :func:`gradient_batches`, on the model's device; on CUDA an out-of-memory error halves the batch and
    retries) when ``vectorized`` and the LoRA layers allow it, else one sample at a time (on the CPU).

    ``pairs``: the records' training pairs, when the caller has them already.
    """
    if not records:
        return torch.zeros((0, sum(p.numel() for p in result.parameters())), dtype=torch.float32)
    if pairs is None:
        pairs = [training_pair(result.base, r) for r in records]
    mods = lora_linear_modules(result) if vectorized else None
    if mods is None:
        return torch.stack([example_gradient(result, r, p) for r, p in zip(records, pairs)])
    lengths = [len(p) for p in pairs]
    splitter = OomSplitter()
    rows: list[torch.Tensor | None] = [None] * len(pairs)
    for idx in gradient_batches(result, lengths, batch_tokens=batch_tokens, batch_size=batch_size):
        got = splitter.run(idx, [lengths[i] for i in idx],
                           lambda part: list(batch_gradients(result, [pairs[i] for i in part], mods)))
        for i, g in zip(idx, got):
            rows[i] = g
    return torch.stack(rows)


def adam_direction(grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.Tensor:
    """Gamma = m' / sqrt(v' + eps) with m' = b1 m + (1 - b1) g and v' = b2 v + (1 - b2) g^2 (no bias correction)."""
    b1, b2 = betas
    m = b1 * exp_avg + (1 - b1) * grad
    v = b2 * exp_avg_sq + (1 - b2) * grad * grad
    return m / torch.sqrt(v + eps)
