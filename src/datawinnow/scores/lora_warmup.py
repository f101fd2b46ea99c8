"""A brief LoRA fine-tune ("warm-up") with peft, shared by the Cherry and LESS scorers.

- Completion-only loss: each sample is (rendered prompt, response + the template's end-of-turn);
  prompt and padding positions get label -100, so only response tokens are trained on.
- AdamW over the LoRA parameters only, a linear (LESS) or constant schedule after a short linear
  warm-up, seeded data order and seeded LoRA initialisation.
- One checkpoint per epoch: the LoRA weights, the optimizer state (``exp_avg``/``exp_avg_sq`` per
  LoRA parameter, what LESS preconditions with) and the mean learning rate over the epoch's steps
  (LESS's checkpoint weight). Checkpoints are written atomically to the cache, so a rerun with the
  same base model, samples and settings loads them, and an interrupted run resumes after the last
  finished epoch.

The base model of the :class:`~datawinnow.backends.CausalLM` passed in is never modified: the
warm-up trains a deep copy.
"""

from __future__ import annotations

import copy
import io
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..backends.causal_lm import CausalLM, Pair
from ..cache import atomic_write_bytes, atomic_write_json, cache_root, stable_hash
from ..data.record import Record
from ..errors import ConfigError, DataError, MissingDependencyError
from ..runtime.progress import progress_bar

IGNORE = -100
SCHEDULES = ("linear", "constant")


@dataclass
class WarmupConfig:
    """LoRA and optimiser settings of a warm-up run (all part of its cache key)."""

    epochs: int = 1
    lr: float = 2e-4
    batch_size: int = 4
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str = "q_proj,k_proj,v_proj,o_proj"  # comma list, or "all-linear"
    warmup_ratio: float = 0.03
    schedule: str = "linear"
    weight_decay: float = 0.0
    seed: int = 0

    def check(self) -> None:
        if int(self.epochs) < 1:
            raise ConfigError(f"warm-up epochs must be >= 1, got {self.epochs}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"warm-up batch_size must be >= 1, got {self.batch_size}")
        if not float(self.lr) > 0:
            raise ConfigError(f"warm-up lr must be > 0, got {self.lr}")
        if int(self.lora_r) < 1:
            raise ConfigError(f"lora_r must be >= 1, got {self.lora_r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"warm-up schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")
        if not 0.0 <= float(self.warmup_ratio) < 1.0:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    def modules(self) -> str | list[str]:
        text = str(self.target_modules).strip()
        if text == "all-linear":
            return text
        mods = [m.strip() for m in text.split(",") if m.strip()]
        if not mods:
            raise ConfigError("target_modules is empty")
        return mods


@dataclass
class Checkpoint:
    """The state after one epoch: LoRA weights, Adam moments per LoRA parameter, the epoch's mean lr."""

    epoch: int
    lr: float
    step: int
    lora: dict[str, torch.Tensor]
    exp_avg: dict[str, torch.Tensor]
    exp_avg_sq: dict[str, torch.Tensor]
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


@dataclass
class WarmupResult:
    """The LoRA model (at the last checkpoint), every checkpoint, per-step losses and the run's key."""

    model: Any
    base: CausalLM
    checkpoints: list[Checkpoint]
    losses: list[float]
    key: str
    names: list[str] = field(default_factory=list)  # LoRA parameter names, in gradient order
    seconds: float = 0.0
    from_cache: bool = False

    def parameters(self) -> list[torch.nn.Parameter]:
        named = dict(self.model.named_parameters())
        return [named[n] for n in self.names]

    def load_checkpoint(self, index: int) -> Checkpoint:
        """Put checkpoint ``index``'s LoRA weights into the model (in place) and return it."""
        ck = self.checkpoints[index]
        with torch.no_grad():
            for p, n in zip(self.parameters(), self.names):
                p.copy_(ck.lora[n].to(p.device, p.dtype))
        return ck

    def causal_lm(self, index: int = -1) -> CausalLM:
        """The warmed-up model as a :class:`CausalLM` (same tokenizer, renderer settings and max length)."""
        self.load_checkpoint(index)
        ck = self.checkpoints[index]
        return CausalLM(self.model, self.base.tokenizer, identity=f"{self.base.identity}+warmup:{self.key}@{ck.epoch}",
                        system=self.base.renderer.system, max_length=self.base.max_length)


def training_pair(lm: CausalLM, record: Record) -> Pair:
    """The completion-only training sequence: the rendered prompt, then response + end of turn."""
    if not record.output.strip():
        raise DataError(f"record '{record.id}' has an empty response; it cannot be trained on", field="output")
    return lm.pair(lm.renderer.prompt(record), record.output + lm.renderer.end_of_turn())


def collate(pairs: Sequence[Pair], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask and labels (-100 on prompt and padding)."""
    width = max(len(p) for p in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE, dtype=torch.long)
    for b, p in enumerate(pairs):
        seq = p.prompt + p.response
        ids[b, :len(seq)] = torch.tensor(seq)
        mask[b, :len(seq)] = 1
        labels[b, len(p.prompt):len(seq)] = torch.tensor(p.response)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def completion_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over every labelled (response) token of the batch, as a causal-LM loss with labels.

    The same value as ``model(**batch).loss``, but the LM head runs only at the positions that predict
    a response token: no [batch, length, vocabulary] logits for prompt tokens (SmolLM2's vocabulary
    is 49k, so this saves most of the memory of a step and a share of its time).
    """
    logits, targets, _ = response_logits(model, batch)
    return torch.nn.functional.cross_entropy(logits, targets)


def completion_losses(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[b]``: each sequence's own mean cross-entropy over its labelled tokens (what batch size 1 gives)."""
    logits, targets, rows = response_logits(model, batch)
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    n = batch["labels"].shape[0]
    sums = torch.zeros(n, dtype=ce.dtype, device=ce.device).index_add_(0, rows, ce)
    counts = torch.zeros(n, dtype=ce.dtype, device=ce.device).index_add_(0, rows, torch.ones_like(ce))
    return sums / counts


def response_logits(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 logits ``[N, V]`` at the N positions that predict a labelled token, those tokens, and their rows."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone, head = getattr(base, base.base_model_prefix), base.get_output_embeddings()
    hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    rows = torch.arange(targets.shape[0], device=targets.device)[:, None].expand_as(targets)[keep]
    return head(hidden[:, :-1][keep]).float(), targets[keep], rows


def _peft():
    try:
        import peft
    except ImportError:
        raise MissingDependencyError("peft", "train", "the LoRA warm-up (cherry, less)") from None
    return peft


def _plain_base(lm: CausalLM):
    """A trainable deep copy of the base model (an adapter already on it is merged first)."""
    model = copy.deepcopy(lm.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model


def build_lora_model(lm: CausalLM, cfg: WarmupConfig):
    """A fresh peft LoRA model over a copy of ``lm``'s weights (seeded initialisation)."""
    peft = _peft()
    base = _plain_base(lm)
    for p in base.parameters():
        p.requires_grad_(False)
    lcfg = peft.LoraConfig(r=int(cfg.lora_r), lora_alpha=int(cfg.lora_alpha), lora_dropout=float(cfg.lora_dropout),
                           target_modules=cfg.modules(), bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(int(cfg.seed))
    try:
        model = peft.get_peft_model(base, lcfg)
    except ValueError as e:
        raise ConfigError(f"cannot put LoRA on target_modules={cfg.target_modules!r}: {e}") from None
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return model, names


def warmup_key(lm: CausalLM, records: Sequence[Record], cfg: WarmupConfig) -> str:
    return stable_hash({"model": lm.identity, "system": lm.renderer.system, "max_length": lm.max_length,
                        "records": [[r.id, r.content_key()] for r in records], "config": asdict(cfg), "format": 1})


def _save(path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def lora_warmup(lm: CausalLM, records: Sequence[Record], cfg: WarmupConfig | None = None, *,
                use_cache: bool = True, progress: bool = True, desc: str = "lora warm-up") -> WarmupResult:
    """Train LoRA on ``records`` for ``cfg.epochs`` epochs; a checkpoint after each epoch."""
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    cfg = cfg or WarmupConfig()
    cfg.check()
    if not records:
        raise ConfigError("the LoRA warm-up needs at least one sample")
    key = warmup_key(lm, records, cfg)
    folder = cache_root() / "warmup" / key
    pairs = [training_pair(lm, r) for r in records]
    model, names = build_lora_model(lm, cfg)
    model.to(lm.device)
    params = [dict(model.named_parameters())[n] for n in names]
    opt = torch.optim.AdamW(params, lr=float(cfg.lr), betas=(0.9, 0.999), eps=1e-8, weight_decay=float(cfg.weight_decay))
    bs = int(cfg.batch_size)
    steps_per_epoch = math.ceil(len(pairs) / bs)
    total = steps_per_epoch * int(cfg.epochs)
    warm = int(float(cfg.warmup_ratio) * total)  # rounded down: a run of a few steps gets no lr-0 first step
    sched = (get_linear_schedule_with_warmup(opt, warm, total) if cfg.schedule == "linear"
             else get_constant_schedule_with_warmup(opt, warm))

    checkpoints: list[Checkpoint] = []
    losses: list[float] = []
    start_epoch = 0
    if use_cache:  # resume after the last finished epoch
        checkpoints, losses, last = _read_checkpoints(folder, int(cfg.epochs))
        start_epoch = len(checkpoints)
        if start_epoch:
            with torch.no_grad():
                for p, n in zip(params, names):
                    p.copy_(last["checkpoint"].lora[n].to(p.device, p.dtype))
            opt.load_state_dict(last["optimizer"])
            sched.load_state_dict(last["scheduler"])
    from_cache = start_epoch == int(cfg.epochs)

    t0 = time.perf_counter()
    pad = lm.tokenizer.pad_token_id
    if not from_cache:
        bar = progress_bar((int(cfg.epochs) - start_epoch) * steps_per_epoch, desc, progress, unit="step")
        try:
            for epoch in range(start_epoch, int(cfg.epochs)):
                model.train()
                torch.manual_seed(int(cfg.seed) * 1000 + epoch)  # dropout
                order = _epoch_order(len(pairs), int(cfg.seed), epoch)
                lrs = []
                for k in range(0, len(order), bs):
                    batch = collate([pairs[i] for i in order[k:k + bs]], pad)
                    batch = {name: t.to(lm.device) for name, t in batch.items()}
                    lrs.append(float(sched.get_last_lr()[0]))
                    loss = completion_loss(model, batch)
                    if not torch.isfinite(loss):
                        raise ConfigError(f"{desc}: the training loss became {loss.item()} (lower the lr?)")
                    loss.backward()
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    losses.append(float(loss.item()))
                    bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
                    bar.update(1)
                ck = _checkpoint(epoch + 1, float(np.mean(lrs)), opt, params, names)
                checkpoints.append(ck)
                if use_cache:
                    _save(folder / f"epoch-{epoch + 1}.pt", {"checkpoint": dict(ck.__dict__), "losses": losses,
                                                              "optimizer": opt.state_dict(),
                                                              "scheduler": sched.state_dict()})
        finally:
            bar.close()
        if use_cache:
            atomic_write_json(folder / "meta.json", {"model": lm.identity, "config": asdict(cfg),
                                                     "samples": len(records), "losses": losses})
    model.eval()
    seconds = time.perf_counter() - t0
    if progress and not from_cache:
        print(f"{desc}: {len(records)} samples x {cfg.epochs - start_epoch} epoch(s) in {seconds:.1f} s; "
              f"loss {losses[0]:.3f} -> {losses[-1]:.3f}", file=sys.stderr)
    return WarmupResult(model=model, base=lm, checkpoints=checkpoints, losses=losses, key=key, names=names,
                        seconds=round(seconds, 3), from_cache=from_cache)


def _read_checkpoints(folder, epochs: int) -> tuple[list[Checkpoint], list[float], dict | None]:
    """The finished epochs' checkpoints in ``folder`` (up to the first missing one), the losses so far, and
    the last epoch's saved state (None when there is none)."""
    checkpoints: list[Checkpoint] = []
    losses: list[float] = []
    last = None
    for epoch in range(epochs):
        f = folder / f"epoch-{epoch + 1}.pt"
        if not f.exists():
            break
        last = torch.load(f, map_location="cpu", weights_only=True)
        last["checkpoint"] = Checkpoint(**{**last["checkpoint"], "betas": tuple(last["checkpoint"]["betas"])})
        checkpoints.append(last["checkpoint"])
        losses = list(last["losses"])
    return checkpoints, losses, last


def load_warmup(lm: CausalLM, key: str, cfg: WarmupConfig) -> WarmupResult:
    """A finished warm-up read back from the cache: the LoRA model over ``lm`` (at the last checkpoint) and
    every checkpoint of the run ``key`` names (:attr:`WarmupResult.key`). What another process (a Ray
    worker) uses instead of the training samples; the run must have been cached (``use_cache``)."""
    folder = cache_root() / "warmup" / key
    checkpoints, losses, _ = _read_checkpoints(folder, int(cfg.epochs))
    if len(checkpoints) < int(cfg.epochs):
        raise ConfigError(f"the LoRA warm-up {key} has {len(checkpoints)} of {cfg.epochs} epochs in {folder}: a "
                          "worker reads the warm-up from the cache folder of the run that trained it")
    model, names = build_lora_model(lm, cfg)
    model.to(lm.device)
    result = WarmupResult(model=model, base=lm, checkpoints=checkpoints, losses=losses, key=key, names=names,
                          from_cache=True)
    result.load_checkpoint(len(checkpoints) - 1)
    model.eval()
    return result


def _checkpoint(epoch: int, lr: float, opt: torch.optim.Optimizer, params, names) -> Checkpoint:
    group = opt.param_groups[0]
    exp_avg, exp_avg_sq, lora = {}, {}, {}
    step = 0
    for p, n in zip(params, names):
        st = opt.state.get(p, {})
        lora[n] = p.detach().float().cpu().clone()
        exp_avg[n] = st["exp_avg"].detach().float().cpu().clone() if "exp_avg" in st else torch.zeros_like(lora[n])
        exp_avg_sq[n] = (st["exp_avg_sq"].detach().float().cpu().clone() if "exp_avg_sq" in st
                         else torch.zeros_like(lora[n]))
        if "step" in st:
            step = int(st["step"])
    return Checkpoint(epoch=epoch, lr=lr, step=step, lora=lora, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
                      betas=tuple(float(b) for b in group["betas"]), eps=float(group["eps"]))


def describe(result: WarmupResult) -> dict[str, Any]:
    """A JSON summary for manifests."""
    return {"key": result.key, "epochs": len(result.checkpoints), "lrs": [c.lr for c in result.checkpoints],
            "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "seconds": result.seconds, "from_cache": result.from_cache,
            "lora_parameters": int(sum(c.numel() for c in result.checkpoints[-1].lora.values()))}


__all__ = ["Checkpoint", "WarmupConfig", "WarmupResult", "collate", "completion_loss", "completion_losses", "describe",
           "load_warmup", "lora_warmup", "training_pair"]
