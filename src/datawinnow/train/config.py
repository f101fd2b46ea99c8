"""Training options and their defaults (sized so a 200-sample, 1-epoch LoRA run on the embedded
SmolLM2-135M takes a few minutes on a 2-core CPU), with checks that raise :class:`ConfigError`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ConfigError

METHODS = ("sft", "iterit", "delia")
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
UPDATE_STRATEGIES = ("iterative", "baseline")
SCORE_TYPES = ("IFD", "BOTH")
QUANTIZE = ("none", "4bit")


@dataclass
class TrainConfig:
    """Every option of ``datawinnow train``; ``to_dict()`` is written to the adapter folder."""

    method: str = "sft"
    model: str = "smollm2"
    device: str = "auto"
    dtype: str = "auto"            # auto: bf16 on CUDA and AMX/AVX512-BF16 CPUs, fp32 elsewhere
    system: str | None = None      # None: the chat template's own system policy (see data/prompts.py)
    quantize: str = "none"         # 4bit: QLoRA (CUDA + bitsandbytes)
    # LoRA
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    # optimisation
    learning_rate: float = 2e-4
    scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    epochs: float | None = None    # None: 1 (3 for iterit)
    max_steps: int = -1
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 384
    weight_decay: float = 0.0
    seed: int = 0
    gradient_checkpointing: bool = False
    group_by_length: bool = True
    logging_steps: int = 1
    progress: bool = True
    save_steps: int = 50           # a resumable checkpoint every N optimizer steps (0: none)
    resume: bool = True            # a rerun resumes from the last complete checkpoint of the same run
    # IterIT (SPEC section 4)
    ratio: float = 0.05
    update_ratio: float = 3.0
    update_strategy: str = "iterative"
    score_type: str = "IFD"
    diversity_weight_decay: float = 0.1
    score_batch_size: int = 8
    # DELIA
    cache: str | None = None
    diverse_ratio: float = 1.0
    new_token: str | None = None
    report_tokens: list[str] = field(default_factory=list)

    @property
    def num_epochs(self) -> float:
        if self.epochs is not None:
            return self.epochs
        return 3.0 if self.method == "iterit" else 1.0

    def validate(self) -> "TrainConfig":
        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        check(self.method in METHODS, f"train: method must be one of {', '.join(METHODS)}, got '{self.method}'")
        check(self.scheduler in SCHEDULERS,
              f"train: scheduler must be one of {', '.join(SCHEDULERS)}, got '{self.scheduler}'")
        check(self.quantize in QUANTIZE, f"train: quantize must be one of {', '.join(QUANTIZE)}, got '{self.quantize}'")
        check(self.rank >= 1, f"train: LoRA rank must be >= 1, got {self.rank}")
        check(self.alpha > 0, f"train: LoRA alpha must be > 0, got {self.alpha}")
        check(0.0 <= self.dropout < 1.0, f"train: LoRA dropout must be in [0, 1), got {self.dropout}")
        check(self.learning_rate > 0, f"train: learning rate must be > 0, got {self.learning_rate}")
        check(0.0 <= self.warmup_ratio < 1.0, f"train: warmup ratio must be in [0, 1), got {self.warmup_ratio}")
        check(self.epochs is None or self.epochs > 0, f"train: epochs must be > 0, got {self.epochs}")
        check(self.batch_size >= 1 and self.grad_accum >= 1,
              f"train: batch size and accumulation must be >= 1, got {self.batch_size} and {self.grad_accum}")
        check(self.max_length >= 16, f"train: max length must be >= 16 tokens, got {self.max_length}")
        check(self.save_steps >= 0, f"train: save steps must be >= 0 (0: no checkpoints), got {self.save_steps}")
        check(self.update_strategy in UPDATE_STRATEGIES,
              f"iterit: update_strategy must be one of {', '.join(UPDATE_STRATEGIES)}, got '{self.update_strategy}'")
        check(self.score_type in SCORE_TYPES,
              f"iterit: score_type must be one of {', '.join(SCORE_TYPES)}, got '{self.score_type}'")
        check(0.0 < self.ratio <= 1.0, f"iterit: ratio must be in (0, 1], got {self.ratio}")
        check(self.update_ratio >= 0, f"iterit: update_ratio must be >= 0, got {self.update_ratio}")
        check(0.0 <= self.diversity_weight_decay <= 1.0,
              f"iterit: diversity_weight_decay must be in [0, 1], got {self.diversity_weight_decay}")
        if self.method == "iterit":
            check(self.max_steps <= 0, "iterit: train by epochs (--epochs), not --max-steps: each epoch is one selection")
        if self.method == "delia":
            check(bool(self.cache), "delia: --cache CACHE.jsonl is required (build it with 'datawinnow delia build-cache')")
            check(self.diverse_ratio >= 0, f"delia: diverse ratio must be >= 0, got {self.diverse_ratio}")
        if self.new_token is not None:
            check(bool(self.new_token.strip()) and not any(c.isspace() for c in self.new_token),
                  f"train: --new-token must be a non-empty token without spaces, got {self.new_token!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["num_epochs"] = self.num_epochs
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
