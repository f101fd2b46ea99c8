"""LoRA SFT on trl's ``SFTTrainer`` + peft, with a completion-only loss.

The recipe:

- the model is loaded through :class:`~datawinnow.backends.CausalLM` (``smollm2`` = the embedded
  SmolLM2-135M-Instruct; a folder; a hub id) in the dtype :func:`~datawinnow.backends.device.pick_dtype`
  chooses: bf16 on CUDA and on AMX/AVX512-BF16 CPUs (then trained with bf16 autocast), fp32 elsewhere
  (on AVX2-only CPUs bf16 is emulated and several times slower);
- ``--quantize 4bit`` loads it in 4-bit NF4 (QLoRA) when CUDA and bitsandbytes are present;
- records are pre-tokenized by :mod:`datawinnow.train.collate` (chat template, prompt masked) and
  handed to ``SFTTrainer`` as prompt-completion rows with ``completion_only_loss=True``;
- LoRA (peft) on all linear layers by default; with ``new_token`` the token is added to the
  vocabulary with random initialisation and its embedding row is trained through peft's
  ``trainable_token_indices`` (plus the output row when embeddings are untied);
- batches are grouped by length (less padding), SDPA attention, no gradient checkpointing by
  default (the models trained here fit; recomputation costs about a third of a step).

The adapter folder gets the peft adapter and tokenizer, ``datawinnow_train.json`` (the training
config, resolved device/dtype, versions, final metrics), ``data_manifest.json`` (the ids and
fingerprint of the data seen) and ``train_log.jsonl`` (one line per logging step: loss, lr, ...).

While training, a checkpoint is saved every ``save_steps`` optimizer steps; a killed run, rerun
with the same command, resumes from the last complete one (see :mod:`datawinnow.train.checkpoints`).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..backends.causal_lm import CausalLM
from ..backends.device import dtype_name, pick_device, pick_dtype
from ..cache import atomic_write_json, honour_umask
from ..data.record import Dataset
from ..errors import ConfigError, MissingDependencyError
from . import checkpoints
from .collate import check_trainable, encode_records, to_hf_dataset
from .config import TrainConfig

CONFIG_FILE = "datawinnow_train.json"
MANIFEST_FILE = "data_manifest.json"
LOG_FILE = "train_log.jsonl"

log = logging.getLogger(__name__)


def require_train_deps() -> None:
    for pkg in ("peft", "trl"):
        try:
            __import__(pkg)
        except ImportError:
            raise MissingDependencyError(pkg, "train", "datawinnow train") from None


@dataclass
class TrainResult:
    out_dir: str
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]]
    seen_ids: list[str]
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- model
def load_model(cfg: TrainConfig) -> CausalLM:
    """The model to train, as a CausalLM (fp32/bf16 per pick_dtype; 4-bit for QLoRA)."""
    if cfg.quantize == "4bit":
        return _load_4bit(cfg)
    return CausalLM.load(cfg.model, device=cfg.device, dtype=cfg.dtype, system=cfg.system, max_length=cfg.max_length)


def _load_4bit(cfg: TrainConfig) -> CausalLM:
    dev = pick_device(cfg.device)
    if dev.type != "cuda":
        raise ConfigError("--quantize 4bit (QLoRA) needs a CUDA GPU; none is available here "
                          "(train without --quantize: LoRA on the full-precision model)")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MissingDependencyError("bitsandbytes", "qlora", "--quantize 4bit (QLoRA)") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from ..backends.embedded import LM_ALIASES, smollm2_dense_dir, smollm2_identity
    from ..backends.hub import resolve_model

    if cfg.model in LM_ALIASES:
        path, ident, local = str(smollm2_dense_dir()), smollm2_identity(), True
    else:
        src = resolve_model(cfg.model)
        path, ident, local = src.path, cfg.model, src.local_only
    compute = pick_dtype(cfg.dtype, dev)
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=compute)
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, dtype=compute,
                                                     device_map={"": dev.index or 0}, local_files_only=local)
    except OSError as e:
        raise ConfigError(f"cannot load model '{cfg.model}': {e}") from None
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return CausalLM(model, tok, identity=f"{ident}|nf4", system=cfg.system, max_length=cfg.max_length)


def add_new_token(lm: CausalLM, token: str, seed: int) -> int:
    """Add ``token`` as a special token with a randomly initialised embedding row; returns its id."""
    tok = lm.tokenizer
    tok.add_tokens([token], special_tokens=True)
    tid = tok.convert_tokens_to_ids(token)
    if len(tok) > lm.model.get_input_embeddings().weight.shape[0]:
        torch.manual_seed(seed)
        # mean_resizing=False: the new row gets the model's random init (normal, initializer_range), as DELIA does
        lm.model.resize_token_embeddings(len(tok), mean_resizing=False)
    return tid


def embeddings_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def _module_name(model, module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name.split(".")[-1]
    raise ConfigError("cannot find the embedding layer to train the new token")


def _expose_head_bias(model) -> None:
    """peft wraps the LM head in a ``TrainableTokensWrapper`` for new tokens; its ``weight`` is the merged,
    differentiable matrix (so trl's fused LM head trains the new rows), but it does not forward ``bias``,
    which the fused head reads. Give it the wrapped layer's bias."""
    head = model.get_output_embeddings()
    if head is None or "bias" in dir(head):
        return
    try:
        head.bias  # noqa: B018
    except AttributeError:
        base = getattr(head, "original_module", None) or getattr(head, "base_layer", None)
        object.__setattr__(head, "bias", getattr(base, "bias", None))


def build_peft_config(cfg: TrainConfig, model, new_token_ids: Sequence[int] = ()):
    from peft import LoraConfig

    trainable = None
    if new_token_ids:
        trainable = {_module_name(model, model.get_input_embeddings()): list(new_token_ids)}
        if not embeddings_tied(model):
            trainable[_module_name(model, model.get_output_embeddings())] = list(new_token_ids)
    targets = cfg.target_modules
    if isinstance(targets, str) and targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                      task_type="CAUSAL_LM", bias="none", trainable_token_indices=trainable)


def build_sft_args(cfg: TrainConfig, out_dir: str, device: torch.device, dtype: torch.dtype, *, n_train: int,
                   checkpointing: bool = False):
    """trl's SFTConfig; ``checkpointing``: save a resumable checkpoint every ``cfg.save_steps`` steps."""
    from trl import SFTConfig

    if n_train < 1:
        raise ConfigError("nothing to train on")
    checkpointing = checkpointing and cfg.save_steps > 0
    return SFTConfig(
        output_dir=out_dir,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if checkpointing else "no",
        save_steps=cfg.save_steps if checkpointing else 500,
        save_total_limit=2,  # the newest complete checkpoint survives a kill while the next one is written
        eval_strategy="no",
        report_to="none",
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        max_length=cfg.max_length,  # rows are pre-truncated by collate.py; this is a no-op guard
        completion_only_loss=True,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        disable_tqdm=not cfg.progress,
        dataloader_pin_memory=device.type == "cuda",
        use_cpu=device.type == "cpu",
    )


# ------------------------------------------------------------------------------------------ trainer
def _trainer_class():
    from trl import SFTTrainer

    class DatawinnowSFTTrainer(SFTTrainer):
        """SFTTrainer whose training sampler can be replaced (IterIT draws each epoch's samples)."""

        sampler_factory: Callable[[Any], Any] | None = None

        def _get_train_sampler(self, train_dataset=None):
            if self.sampler_factory is not None:
                return self.sampler_factory(train_dataset if train_dataset is not None else self.train_dataset)
            return super()._get_train_sampler(train_dataset)

    return DatawinnowSFTTrainer


def _log_callback(path: Path):
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        """Appends each log (loss, learning rate, grad norm, epoch, step) to ``train_log.jsonl``."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    return LossLog()


def run_sft(
    records: Dataset,
    cfg: TrainConfig,
    out_dir: str,
    *,
    lm: CausalLM | None = None,
    callbacks: Sequence[Any] = (),
    sampler_factory: Callable[[Any], Any] | None = None,
    manifest: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    on_model_ready: Callable[[CausalLM, Any], list[Any]] | None = None,
    resumable: bool = True,
) -> TrainResult:
    """Train a LoRA adapter on ``records`` and write it, with its config, manifest and log, to ``out_dir``.

    ``on_model_ready(lm, trainer_inputs)`` may return extra callbacks once the model is loaded (the
    training-time methods use it to score with the model being trained). ``resumable``: save
    checkpoints and resume from them (off for runs whose callbacks keep state the checkpoints do not
    hold, such as IterIT's schedule).
    """
    require_train_deps()
    cfg.validate()
    check_trainable(records)
    t0 = time.perf_counter()
    if lm is None:
        lm = load_model(cfg)
    new_ids: list[int] = []
    if cfg.new_token:
        new_ids.append(add_new_token(lm, cfg.new_token, cfg.seed))
    rows = encode_records(lm.tokenizer, lm.renderer, records, cfg.max_length)
    hf_ds = to_hf_dataset(rows)
    import datasets

    datasets.disable_progress_bars()  # trl's per-column map() bars; the training bar stays
    device, dtype = lm.device, lm.dtype
    if cfg.quantize == "4bit":
        dtype = pick_dtype(cfg.dtype, device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = None
    if resumable and cfg.save_steps > 0:
        identity = checkpoints.run_identity(cfg.to_dict(), fingerprint=records.fingerprint(), model=lm.identity,
                                            n_rows=len(rows))
        start = checkpoints.prepare(out, identity, resume=cfg.resume)
    else:
        checkpoints.discard(out)
    resumed_step = int(checkpoints.CHECKPOINT.fullmatch(start.name).group(1)) if start is not None else None
    if resumed_step is not None:
        checkpoints.truncate_log(out / LOG_FILE, resumed_step)
    else:
        (out / LOG_FILE).unlink(missing_ok=True)
    args = build_sft_args(cfg, str(out), device, dtype, n_train=len(hf_ds), checkpointing=resumable)
    peft_cfg = build_peft_config(cfg, lm.model, new_ids)
    extra = list(on_model_ready(lm, {"rows": rows, "new_token_ids": new_ids}) if on_model_ready else [])
    trainer_cls = _trainer_class()
    trainer = trainer_cls(model=lm.model, args=args, train_dataset=hf_ds, processing_class=lm.tokenizer,
                          peft_config=peft_cfg, callbacks=[_log_callback(out / LOG_FILE), checkpoints.marker_callback(),
                                                           *callbacks, *extra])
    trainer.sampler_factory = sampler_factory
    if not cfg.progress:  # without a progress bar, transformers prints every log dict instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    if new_ids:
        _expose_head_bias(trainer.model)
    # the CausalLM keeps pointing at the same module objects: peft injected LoRA layers in place
    for cb in [*callbacks, *extra]:
        if hasattr(cb, "bind"):
            cb.bind(trainer)
    n_params = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    log.info(f"train: {len(records)} samples, {cfg.method}, {lm.identity}, {dtype_name(dtype)} on {device}, "
             f"LoRA r={cfg.rank} on {cfg.target_modules} ({n_params:,} trainable parameters)")
    if len(trainer.train_dataset) != len(rows):  # trl drops rows without a trained token; ours all have one
        raise ConfigError(f"trl kept {len(trainer.train_dataset)} of {len(rows)} training rows")
    result = trainer.train(resume_from_checkpoint=str(start) if start is not None else None)
    seconds = time.perf_counter() - t0
    if callable(manifest):
        manifest = manifest()
    trainer.model.save_pretrained(str(out), save_embedding_layers=False)
    lm.tokenizer.save_pretrained(str(out))
    honour_umask(out)  # safetensors writes the weights 0600
    seen = manifest.get("ids") if manifest and "ids" in manifest else records.ids
    man = {"source": records.path, "format": records.format, "fingerprint": records.fingerprint(),
           "n": len(records), **(manifest or {}), "ids": seen}
    atomic_write_json(out / MANIFEST_FILE, man)
    metrics = dict(result.metrics)
    import peft
    import transformers
    import trl

    from ..runtime.describe import package_version

    atomic_write_json(out / CONFIG_FILE, {
        "config": cfg.to_dict(), "model_identity": lm.identity, "device": str(device), "dtype": dtype_name(dtype),
        "new_token_ids": new_ids, "metrics": metrics, "seconds": round(seconds, 2), "steps": trainer.state.global_step,
        "resumed_from_step": resumed_step,
        "versions": {"datawinnow": package_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "trl": trl.__version__, "peft": peft.__version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    checkpoints.finish(out)
    log.info(f"train: {trainer.state.global_step} steps in {seconds:.1f} s"
             f"{f' (resumed at step {resumed_step})' if resumed_step is not None else ''}, final train loss "
             f"{metrics.get('train_loss', float('nan')):.4f} -> {out}")
    return TrainResult(str(out), metrics, list(trainer.state.log_history), list(seen), seconds,
                       info={"trainer": trainer, "lm": lm, "new_token_ids": new_ids})


def read_config(adapter_dir: str) -> dict[str, Any]:
    path = Path(adapter_dir) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{adapter_dir} is not a datawinnow adapter folder (no {CONFIG_FILE})")
    return json.loads(path.read_text(encoding="utf-8"))
