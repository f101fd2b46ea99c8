"""The causal-LM backend: one wrapper over transformers for every model-based scorer.

Primitives (all batched; callers form batches with :meth:`CausalLM.plan`: a token budget over
length-sorted work, or a fixed count, see :mod:`~datawinnow.backends.batching`):

- :meth:`CausalLM.response_logprobs`: per-token log p(y_t | prefix) over the response span only,
  teacher-forced. Logits are computed only at response positions: the backbone runs once, the
  hidden states at the positions that predict response tokens are gathered, and only those go
  through the LM head (the vocabulary is 49k; full logits would cost memory and time).
- :meth:`CausalLM.response_loss`: the mean token cross-entropy over the response (from the above).
- :meth:`CausalLM.prefix_cache` and :meth:`CausalLM.response_logprobs_after`: shared prefixes encoded once
  (their KV caches kept), then the response log-probabilities of continuations that each read their own
  prefix's cache (the DELIFT kernel: an in-context example's prefix shared by many targets).
- :meth:`CausalLM.next_token_logprobs`: the next-token distribution after each prompt (rating read-outs).
- :meth:`CausalLM.generate`: batched generation with left padding.

Sequences are token-id lists: a prompt part and a response part tokenized separately and joined,
so the response span is exact whatever the tokenizer does at the boundary.

**Start token.** Every prompt datawinnow builds from text (:meth:`CausalLM.prompt_ids`, so every
:meth:`~CausalLM.pair`, both IFD passes, the DELIFT kernel's prompts, multiple choice and generation)
begins with the model's start token exactly once: the tokenizer's BOS, or its EOS when it has no BOS
(GPT-2's ``<|endoftext|>`` is both). It is not added again when the text already begins with it, as
chat templates that write the BOS themselves do (SmolLM2's ChatML starts with its BOS
``<|im_start|>``). An empty prompt is therefore the start token alone, so a template-less model's
unconditioned pass and its Alpaca-prompt conditioned pass start the same way. Truncating a prompt
keeps its start token and its end.

**Precision.** The LM head and the log-softmax run in float32 whatever the model's dtype
(:class:`Fp32Head`): in bf16 the logits are rounded to 8 significant bits before the softmax, enough
to reorder close IFD scores, DELIFT utilities and multiple-choice log-likelihoods.

**Batches.** Every primitive pads only to its batch's longest sequence, counts the real and the computed
(padded) positions in :attr:`CausalLM.padding`, and runs through :class:`~.batching.OomSplitter`: on a
CUDA out-of-memory error the model's token ceiling halves and the batch is retried in halves.
:meth:`CausalLM.response_logprobs` has a padding-free path (:attr:`CausalLM.packing`): the batch's
sequences packed into one row, position ids restarting per sequence, no attention mask, so no padding
is computed. transformers then keeps the sequences apart; it is used only where the attention
implementation does that without a dense mask (flash-attention's variable-length kernels: CUDA with
``attn_implementation="flash_attention_2"``/``_3``); with sdpa or eager attention (every CPU run)
transformers would build a block-diagonal mask over the packed row and compute attention across the
whole row, so length-sorted token-budget batches, whose padding is small, are used there.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..data.prompts import PromptRenderer
from ..data.record import Record
from ..errors import ConfigError
from .batching import (CPU_MAX_PADDING, OomSplitter, auto_batch_tokens, fixed_batches, parse_batch_tokens,
                       plan_batches)
from .device import dtype_name, pick_device, pick_dtype
from .embedded import LM_ALIASES, set_offline, smollm2_dense_dir, smollm2_identity
from .hub import resolve_model

LOGIT_CHUNK = 1024  # response positions per LM-head call


@dataclass
class Pair:
    """A teacher-forced sequence: prompt token ids, then response token ids (the scored span)."""

    prompt: list[int]
    response: list[int]

    def __len__(self) -> int:
        return len(self.prompt) + len(self.response)


@dataclass
class PrefixCache:
    """Prefixes encoded once (:meth:`CausalLM.prefix_cache`): per layer the keys and values
    ``[n, kv_heads, width, head_dim]`` of the right-padded prefixes, the mask of their real positions
    ``[n, width]`` (on the model's device) and their real lengths."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor
    lengths: list[int]

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (so memory problems show at once)."""
    return fixed_batches(lengths, batch_size)


def packing_supported(model) -> bool:
    """Whether the model's attention runs packed sequences (position ids restarting, no mask) without a dense
    mask over the packed row: flash-attention's variable-length kernels."""
    impl = str(getattr(getattr(model, "config", None), "_attn_implementation", "") or "")
    return impl.startswith("flash_attention")


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``[b, width]`` token ids and attention mask (1 on real tokens) for a batch."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for b, s in enumerate(sequences):
        ids[b, :len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[b, :len(s)] = 1
    return ids, mask


def truncate_pair(prompt: list[int], response: list[int], max_length: int, *, keep_head: int = 0) -> Pair:
    """Fit a pair into ``max_length`` tokens.

    The response keeps at least half the window (or all of itself if shorter); the prompt keeps its
    first ``keep_head`` tokens (the start token) and then its *last* tokens (the assistant header and
    the end of the request); the response is cut at the end.
    """
    if len(prompt) + len(response) <= max_length:
        return Pair(list(prompt), list(response))
    r_keep = min(len(response), max(max_length - len(prompt), max_length // 2))
    return Pair(cut_prompt(prompt, max_length - r_keep, keep_head), list(response[:r_keep]))


def cut_prompt(prompt: Sequence[int], budget: int, keep_head: int = 0) -> list[int]:
    """``prompt`` in at most ``budget`` tokens: its first ``keep_head`` tokens, then its last ones."""
    if len(prompt) <= budget:
        return list(prompt)
    if budget <= 0:
        return []
    head = list(prompt[:min(keep_head, budget)])
    tail = budget - len(head)
    return head + (list(prompt[len(prompt) - tail:]) if tail else [])


class Fp32Head:
    """The LM head and log-softmax in float32, whatever the model's dtype.

    The head's weight is cast once per object (create one per batch: the weight may be trained
    between batches); hidden states are cast before the matmul, so nothing is rounded to bf16/fp16
    after the final norm. Gemma-style final logit soft-capping is applied when the config has it.
    """

    def __init__(self, head: torch.nn.Module, config=None):
        self.head = head
        self.softcap = getattr(config, "final_logit_softcapping", None) if config is not None else None
        if isinstance(head, torch.nn.Linear):
            self.weight = head.weight.float()
            self.bias = head.bias.float() if head.bias is not None else None
        else:  # a wrapped head (e.g. a PEFT module): run it, then widen
            self.weight = self.bias = None

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits ``[..., V]`` for hidden states ``[..., H]``."""
        if self.weight is not None:
            out = torch.nn.functional.linear(hidden.float(), self.weight, self.bias)
        else:
            out = self.head(hidden).float()
        if self.softcap:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out

    def log_softmax(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 log-probabilities over the vocabulary ``[..., V]``."""
        return torch.log_softmax(self.logits(hidden), dim=-1)

    def token_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor, chunk: int = LOGIT_CHUNK) -> torch.Tensor:
        """log p(targets[n]) from hidden states ``[N, H]`` (float32 ``[N]``), ``chunk`` rows at a time."""
        out = torch.empty(len(targets), dtype=torch.float32, device=hidden.device)
        for k in range(0, len(targets), chunk):
            out[k:k + chunk] = self.log_softmax(hidden[k:k + chunk]).gather(1, targets[k:k + chunk, None]).squeeze(1)
        return out


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float32 numpy copy of a tensor on any device, in any dtype (bf16 has no numpy type)."""
    return t.detach().float().cpu().numpy()


def _file_fingerprint(folder: Path) -> str:
    h = hashlib.sha1()
    for name in sorted(os.listdir(folder)):
        if name.endswith((".safetensors", ".bin", ".json", ".gguf")):
            st = (folder / name).stat()
            h.update(f"{name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]


class CausalLM:
    """A causal LM, its tokenizer and its prompt renderer, with batched scoring primitives."""

    def __init__(self, model, tokenizer, *, identity: str, system: str | None = None, max_length: int = 512):
        self.model = model
        self.tokenizer = tokenizer
        self.identity = identity
        self.max_length = max_length
        self.renderer = PromptRenderer(tokenizer, system)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model.eval()
        self.oom = OomSplitter()
        self.packing = packing_supported(self._unwrapped())
        self.padding = {"real": 0, "computed": 0}  # token positions entering the backbone: real, and computed
        self._auto_tokens: int | None = None
        self.source: str | None = None  # the name it was loaded from (``NAME+ADAPTER``): what another process loads
        # budget batches' padding cap (batching module): on a CPU padded positions cost as much as real ones
        self.max_padding: float | None = CPU_MAX_PADDING if self.device.type == "cpu" else None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, name: str | None = None, *, device: str | None = "auto", dtype: str | None = "auto",
             system: str | None = None, adapter: str | None = None, max_length: int = 512) -> "CausalLM":
        """Load a model: None or ``smollm2`` (embedded default), a local folder, or a hub id.

        ``NAME+ADAPTER_DIR`` (or ``adapter=``) applies a trained LoRA adapter on top.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if name and "+" in name and adapter is None:
            name, adapter = name.split("+", 1)
        dev = pick_device(device)
        dt = pick_dtype(dtype, dev)
        src_is_folder = True
        if name in LM_ALIASES:
            set_offline()
            path, ident, local = str(smollm2_dense_dir()), smollm2_identity(), True
        else:
            src = resolve_model(str(name))  # an empty folder, a missing path or an unreachable hub: one clear error
            path, local = src.path, src.local_only
            ident = f"{os.path.abspath(path)}@{_file_fingerprint(Path(path))}" if src.folder else str(name)
            src_is_folder = src.folder
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dt, local_files_only=local)
        except (OSError, ValueError) as e:  # missing or unreadable files
            raise ConfigError(f"cannot load model '{name}': {e}") from None
        if not src_is_folder:
            ident = f"{name}@{getattr(model.config, '_commit_hash', None) or 'unknown'}"
        if adapter:
            tokenizer = cls._adapter_tokenizer(model, tokenizer, adapter)
            model, ident = cls._apply_adapter(model, adapter, ident)
        model.to(dev)
        lm = cls(model, tokenizer, identity=f"{ident}|{dtype_name(dt)}", system=system, max_length=max_length)
        lm.source = f"{name}+{adapter}" if adapter else (None if name in LM_ALIASES and name is None else name)
        return lm

    @staticmethod
    def _adapter_tokenizer(model, tokenizer, adapter: str):
        """The adapter's own tokenizer when training added tokens (e.g. ``--new-token``); the base's otherwise.

        The base embeddings are resized to match; the trained rows come from the adapter.
        """
        from transformers import AutoTokenizer

        if not os.path.isfile(os.path.join(adapter, "tokenizer_config.json")):
            return tokenizer
        own = AutoTokenizer.from_pretrained(adapter, local_files_only=True)
        if len(own) <= len(tokenizer):
            return tokenizer
        if len(own) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(own), mean_resizing=False)
        return own

    @staticmethod
    def _apply_adapter(model, adapter: str, ident: str):
        try:
            from peft import PeftModel
        except ImportError:
            from ..errors import MissingDependencyError
            raise MissingDependencyError("peft", "train", "loading a LoRA adapter") from None
        if not os.path.isdir(adapter):
            raise ConfigError(f"adapter folder not found: {adapter}")
        model = PeftModel.from_pretrained(model, adapter)
        return model, f"{ident}+{os.path.abspath(adapter)}@{_file_fingerprint(Path(adapter))}"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------ tokens
    def encode(self, text: str) -> list[int]:
        """The text's token ids, no special tokens added."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def start_ids(self) -> list[int]:
        """The start token: ``[BOS]`` when the tokenizer has one, else ``[EOS]``, else ``[]``."""
        tid = self.tokenizer.bos_token_id
        if tid is None:
            tid = self.tokenizer.eos_token_id
        return [tid] if tid is not None else []

    def prompt_ids(self, text: str) -> list[int]:
        """A prompt's token ids under the start-token rule (module docstring): the start token, then the
        text's tokens; not added twice when the text (a chat template's rendering) already begins with it."""
        ids = self.encode(text)
        start = self.start_ids()
        if ids[:len(start)] != start:
            ids = start + ids
        if not ids:
            raise ConfigError(f"model {self.identity}: its tokenizer has neither a BOS nor an EOS token, so an empty "
                              "prompt has no token to condition on")
        return ids

    def _start_kept(self, prompt: list[int]) -> int:
        start = self.start_ids()
        return len(start) if prompt[:len(start)] == start else 0

    def pair(self, prompt_text: str, response_text: str, *, bare: bool = False) -> Pair:
        """A truncated teacher-forced pair, the prompt under the start-token rule.

        ``bare`` scores the response after the start token alone (the same as an empty prompt text).
        """
        prompt = self.prompt_ids("" if bare else prompt_text)
        return truncate_pair(prompt, self.encode(response_text), self.max_length, keep_head=self._start_kept(prompt))

    def span_pair(self, prompt_text: str, response: Sequence[int]) -> Pair:
        """A pair that scores exactly the response tokens given (e.g. the span another pass kept).

        The prompt follows the start-token rule; if it does not fit beside the response in
        ``max_length`` tokens it keeps its start token and its end.
        """
        prompt = self.prompt_ids(prompt_text)
        budget = max(1, self.max_length - len(response))
        return Pair(cut_prompt(prompt, budget, self._start_kept(prompt)), list(response))

    def record_pair(self, record: Record) -> Pair:
        return self.pair(self.renderer.prompt(record), record.output)

    def fp32_head(self) -> Fp32Head:
        """The LM head in float32 (see :class:`Fp32Head`); build one per batch."""
        _, head = self._backbone_and_head()
        return Fp32Head(head, self._unwrapped().config)

    # ------------------------------------------------------------------ scoring
    def _unwrapped(self):
        m = self.model
        return m.get_base_model() if hasattr(m, "get_base_model") else m

    def _backbone_and_head(self):
        m = self._unwrapped()
        return getattr(m, m.base_model_prefix), m.get_output_embeddings()

    # ------------------------------------------------------------------ batches
    def resolve_batch_tokens(self, value) -> int | None:
        """A token budget: None (none: fixed-count batches), a whole number, or 'auto' (from free memory on
        CUDA, a fixed default elsewhere; :func:`~.batching.auto_batch_tokens`), within the OOM ceiling."""
        value = parse_batch_tokens(value)
        if value == "auto":
            if self._auto_tokens is None:
                self._auto_tokens = auto_batch_tokens(self.device, self._unwrapped().config, self.dtype)
            value = self._auto_tokens
        if value is not None and self.oom.ceiling is not None:
            value = min(value, self.oom.ceiling)
        return value

    def plan(self, lengths: Sequence[int], *, batch_size: int = 8, batch_tokens=None,
             max_batch: int | None = None) -> list[list[int]]:
        """Length-sorted batches (longest first): by token budget when ``batch_tokens`` is set ('auto' or a
        number), ``batch_size`` sequences each otherwise."""
        return plan_batches(lengths, batch_size=batch_size, batch_tokens=self.resolve_batch_tokens(batch_tokens),
                            max_batch=max_batch, max_padding=self.max_padding)

    def _count(self, real: int, computed: int) -> None:
        self.padding["real"] += int(real)
        self.padding["computed"] += int(computed)

    def _forward(self, backbone, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states; without a mask when nothing is padded (the unmasked attention path is faster)."""
        dev = self.device
        self._count(mask.sum(), mask.numel())
        attn = None if bool(mask.all()) else mask.to(dev)
        return backbone(input_ids=ids.to(dev), attention_mask=attn).last_hidden_state

    @torch.inference_mode()
    def hidden_states(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The final layer's hidden states ``[b, width, H]`` of a right-padded batch, and its mask (on the model's device)."""
        backbone, _ = self._backbone_and_head()
        ids, mask = pad_right(sequences, self.tokenizer.pad_token_id)
        return self._forward(backbone, ids, mask), mask.to(self.device)

    def last_token_states(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """The final layer's hidden state at each sequence's last token, ``[b, H]`` (model dtype and device)."""
        def run(seqs):
            hidden, _ = self.hidden_states(seqs)
            last = torch.tensor([len(s) - 1 for s in seqs], device=hidden.device)
            return list(hidden[torch.arange(len(seqs), device=hidden.device), last])

        return torch.stack(self.oom.run(sequences, [len(s) for s in sequences], run))

    def response_logprobs(self, pairs: Sequence[Pair]) -> list[np.ndarray]:
        """Per-token log p(y_t | x, y_<t) for each pair's response tokens, as float32 arrays (one batch;
        packed where :attr:`packing` is on, split in halves on a CUDA out-of-memory error)."""
        for p in pairs:
            if not p.prompt and p.response:
                raise ValueError("a pair needs at least one prompt token (prompt_ids() gives the start token)")
        run = self._packed_logprobs if self.packing else self._padded_logprobs
        return self.oom.run(pairs, [len(p) for p in pairs], run)

    @torch.inference_mode()
    def _packed_logprobs(self, pairs: Sequence[Pair]) -> list[np.ndarray]:
        """The padding-free path: one row, the pairs one after another, position ids restarting per pair."""
        backbone, _ = self._backbone_and_head()
        dev = self.device
        seqs = [p.prompt + p.response for p in pairs]
        ids = torch.tensor([t for s in seqs for t in s], dtype=torch.long)[None]
        pos = torch.cat([torch.arange(len(s)) for s in seqs])[None]
        offsets = np.cumsum([0] + [len(s) for s in seqs])
        pred = torch.cat([torch.arange(len(p.response)) + int(offsets[b]) + len(p.prompt) - 1
                          for b, p in enumerate(pairs)]).long()
        self._count(ids.numel(), ids.numel())
        hidden = backbone(input_ids=ids.to(dev), position_ids=pos.to(dev), use_cache=False).last_hidden_state[0]
        targets = torch.cat([torch.tensor(p.response, dtype=torch.long) for p in pairs]).to(dev)
        out_np = to_numpy(self.fp32_head().token_logprobs(hidden[pred.to(dev)], targets))
        sizes = np.cumsum([0] + [len(p.response) for p in pairs])
        return [out_np[sizes[b]:sizes[b + 1]].copy() for b in range(len(pairs))]

    @torch.inference_mode()
    def _padded_logprobs(self, pairs: Sequence[Pair]) -> list[np.ndarray]:
        """One right-padded batch, padded to its longest pair."""
        if not pairs:
            return []
        backbone, _ = self._backbone_and_head()
        width = max(len(p) for p in pairs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(pairs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        pred_pos = torch.zeros((len(pairs), width), dtype=torch.bool)  # positions whose output predicts y_t
        for b, p in enumerate(pairs):
            seq = p.prompt + p.response
            ids[b, :len(seq)] = torch.tensor(seq)
            mask[b, :len(seq)] = 1
            start = len(p.prompt)
            pred_pos[b, start - 1:start - 1 + len(p.response)] = True
        dev = self.device
        hidden = self._forward(backbone, ids, mask)
        picked = hidden[pred_pos.to(dev)]  # [N, H], row-major: pair by pair, token by token
        targets = torch.cat([torch.tensor(p.response, dtype=torch.long) for p in pairs]).to(dev)
        out_np = to_numpy(self.fp32_head().token_logprobs(picked, targets))
        sizes = np.cumsum([0] + [len(p.response) for p in pairs])
        return [out_np[sizes[b]:sizes[b + 1]].copy() for b in range(len(pairs))]

    # ------------------------------------------------------------------ shared prefixes
    @torch.inference_mode()
    def prefix_cache(self, prefixes: Sequence[Sequence[int]]) -> PrefixCache:
        """Encode ``prefixes`` (token ids, start token included) in one right-padded forward pass and keep
        their KV caches, for :meth:`response_logprobs_after`. Callers group prefixes of similar length
        (:meth:`plan`), as the pass pads them to the longest."""
        if not prefixes or not all(prefixes):
            raise ValueError("prefix_cache needs at least one prefix, each of at least one token")
        backbone, _ = self._backbone_and_head()
        ids, mask = pad_right(prefixes, self.tokenizer.pad_token_id)
        self._count(mask.sum(), mask.numel())
        dev = self.device
        past = backbone(input_ids=ids.to(dev), attention_mask=None if bool(mask.all()) else mask.to(dev),
                        use_cache=True).past_key_values
        return PrefixCache([(layer.keys, layer.values) for layer in past.layers], mask.to(dev),
                           [len(p) for p in prefixes])

    def response_logprobs_after(self, cache: PrefixCache, pairs: Sequence[Pair],
                                rows: Sequence[int] | None = None) -> list[np.ndarray]:
        """Per-token log p(y_t | prefix, x, y_<t) for each pair's response, where the pair's prompt ``x``
        continues prefix ``rows[k]`` of ``cache`` (None: every pair continues prefix 0), as float32 arrays.

        One batch (form it with :meth:`plan` over the pairs' lengths): right-padded, each row reading its own
        prefix's keys and values (a view, no copy, when the whole batch shares one prefix), the padded prefix
        positions masked out and its position ids continuing from its prefix's real length. The prefix is not
        recomputed, so each pair's prompt needs at least one token (it predicts the first response token).
        On a CUDA out-of-memory error the batch is retried in halves."""
        rows = [0] * len(pairs) if rows is None else list(rows)
        if len(rows) != len(pairs):
            raise ValueError(f"{len(rows)} prefix rows for {len(pairs)} pairs")
        for p in pairs:
            if not p.prompt and p.response:
                raise ValueError("a pair after a prefix needs at least one prompt token")
        items = list(zip(rows, pairs))
        return self.oom.run(items, [cache.lengths[g] + len(p) for g, p in items],
                            lambda batch: self._logprobs_after(cache, batch))

    @torch.inference_mode()
    def _logprobs_after(self, cache: PrefixCache, items: Sequence[tuple[int, Pair]]) -> list[np.ndarray]:
        from transformers import DynamicCache

        if not items:
            return []
        backbone, _ = self._backbone_and_head()
        dev = self.device
        b = len(items)
        ids, mask = pad_right([p.prompt + p.response for _, p in items], self.tokenizer.pad_token_id)
        width = ids.shape[1]
        pred = torch.zeros((b, width), dtype=torch.bool)  # positions whose output predicts y_t
        for r, (_, p) in enumerate(items):
            pred[r, len(p.prompt) - 1:len(p.prompt) - 1 + len(p.response)] = True
        self._count(mask.sum(), mask.numel())
        which = torch.tensor([g for g, _ in items])
        pos = torch.tensor([cache.lengths[g] for g, _ in items])[:, None] + torch.arange(width)[None]
        w = which.to(dev)
        if bool((which == which[0]).all()):  # one prefix: a view, no copy
            kv = [(k[w[:1]].expand(b, -1, -1, -1), v[w[:1]].expand(b, -1, -1, -1)) for k, v in cache.kv]
        else:
            kv = [(k.index_select(0, w), v.index_select(0, w)) for k, v in cache.kv]
        past = DynamicCache(ddp_cache_data=kv, config=self._unwrapped().config)
        full_mask = torch.cat([cache.mask.index_select(0, w), mask.to(dev)], dim=1)
        hidden = backbone(input_ids=ids.to(dev), attention_mask=full_mask, position_ids=pos.to(dev),
                          past_key_values=past, use_cache=True).last_hidden_state
        targets = torch.cat([torch.tensor(p.response, dtype=torch.long) for _, p in items]).to(dev)
        vals = to_numpy(self.fp32_head().token_logprobs(hidden[pred.to(dev)], targets))
        sizes = np.cumsum([0] + [len(p.response) for _, p in items])
        return [vals[sizes[k]:sizes[k + 1]].copy() for k in range(b)]

    def response_loss(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Mean cross-entropy over each pair's response tokens (NaN for an empty response)."""
        return np.array([-lp.mean() if len(lp) else np.nan for lp in self.response_logprobs(pairs)],
                        dtype=np.float32)

    @torch.inference_mode()
    def next_token_logprobs(self, prompts: Sequence[list[int]]) -> torch.Tensor:
        """log p(next token | prompt) over the whole vocabulary, [len(prompts), V] float32 on the CPU."""
        return self.fp32_head().log_softmax(self.last_token_states(prompts)).detach().cpu()

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None) -> list[str]:
        """Continue each prompt text (one batch, left-padded; start-token rule); greedy when temperature is 0.
        On a CUDA out-of-memory error the batch is retried in halves (the seed is set once, before the first try)."""
        if seed is not None:
            torch.manual_seed(seed)
        seqs = [self.prompt_ids(p) for p in prompts]
        return self.oom.run(seqs, [len(s) + max_new_tokens for s in seqs],
                            lambda batch: self._generate(batch, max_new_tokens, temperature, top_p))

    @torch.inference_mode()
    def _generate(self, seqs: list[list[int]], max_new_tokens: int, temperature: float, top_p: float) -> list[str]:
        tok = self.tokenizer
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[b, width - len(s):] = 1
        self._count(mask.sum(), mask.numel())
        kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
        new = out[:, width:]
        from .decoding import decode_generated

        return decode_generated(tok, new.cpu())

    def iter_batches(self, pairs: Sequence[Pair], batch_size: int = 8,
                     batch_tokens=None) -> Iterator[tuple[list[int], list[np.ndarray]]]:
        """(indices, per-token log-probs) for length-sorted batches over ``pairs`` (see :meth:`plan`)."""
        for idx in self.plan([len(p) for p in pairs], batch_size=batch_size, batch_tokens=batch_tokens):
            yield idx, self.response_logprobs([pairs[i] for i in idx])
