"""Per-example LoRA gradients and LESS's Adam-preconditioned update direction.

- :func:`example_gradient`: the gradient of one sample's own completion-only loss (mean token
  cross-entropy over its response) with respect to the LoRA parameters only, i.e. batch size 1,
  flattened in the warm-up's parameter order. The model runs in eval mode (no dropout).
- :func:`adam_direction`: for a training sample, the step Adam would take from the checkpoint's
  moments, without bias correction (LESS): m' = b1 m + (1 - b1) g, v' = b2 v + (1 - b2) g^2,
  Gamma = m' / sqrt(v' + eps).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .lora_warmup import Checkpoint, WarmupResult, collate, completion_loss, training_pair


def flat_state(checkpoint: Checkpoint, names: Sequence[str], which: str) -> torch.Tensor:
    """``exp_avg`` or ``exp_avg_sq`` of every LoRA parameter, flattened in ``names`` order."""
    state = getattr(checkpoint, which)
    return torch.cat([state[n].reshape(-1).float() for n in names])


def example_gradient(result: WarmupResult, record) -> torch.Tensor:
    """The flattened float32 gradient of one record's loss w.r.t. the LoRA parameters (on the CPU)."""
    lm = result.base
    model = result.model
    model.eval()
    batch = collate([training_pair(lm, record)], lm.tokenizer.pad_token_id)
    batch = {k: v.to(lm.device) for k, v in batch.items()}
    params = result.parameters()
    with torch.enable_grad():
        loss = completion_loss(model, batch)
        grads = torch.autograd.grad(loss, params)
    return torch.cat([g.reshape(-1).float() for g in grads]).cpu()


def adam_direction(grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.Tensor:
    """Gamma = m' / sqrt(v' + eps) with m' = b1 m + (1 - b1) g and v' = b2 v + (1 - b2) g^2 (no bias correction)."""
    b1, b2 = betas
    m = b1 * exp_avg + (1 - b1) * grad
    v = b2 * exp_avg_sq + (1 - b2) * grad * grad
    return m / torch.sqrt(v + eps)
