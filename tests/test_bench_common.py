"""benchmarks/_common.py: the FLOP count (non-embedding parameters by hand, real tokens of a padded batch,
cached prefixes counted once), the measured peak and the --model/--tiny options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _common import FlopCounter, add_model_options, measure_peak, model_name, non_embedding_params  # noqa: E402

from datawinnow.backends.causal_lm import Pair  # noqa: E402


def test_non_embedding_parameters_by_hand(tiny_lm):
    # tests/conftest.py's tiny Llama: hidden 32, 2 layers, MLP 64, 4 heads of 8, 2 key/value heads
    per_layer = 32 * 32 + 32 * 16 + 32 * 16 + 32 * 32 + 3 * 32 * 64 + 2 * 32  # q k v o, gate up down, two norms
    assert non_embedding_params(tiny_lm) == 2 * per_layer + 32  # + the final norm


def test_flop_counter_counts_real_tokens_once(tiny_lm):
    n = non_embedding_params(tiny_lm)
    pairs = [Pair([1, 5, 9], [7, 8]), Pair([1, 4], [6, 6, 6, 2, 3, 4])]  # 5 and 8 tokens: padded to 8
    with FlopCounter(tiny_lm) as c:
        tiny_lm.response_logprobs(pairs)
    assert (c.tokens, c.positions) == (13, 16) and c.flops == 2 * n * 13
    backbone = tiny_lm.model.model
    with FlopCounter(tiny_lm.model, backward=1) as c:  # a transformers model works too; a cached prefix counts once
        past = backbone(input_ids=torch.tensor([[1, 5, 9, 4]]), use_cache=True).past_key_values
        backbone(input_ids=torch.tensor([[7, 8]]), attention_mask=torch.ones(1, 6, dtype=torch.long),
                 past_key_values=past)
    assert c.tokens == 6 and c.flops == 2 * n * 6 * 2
    assert c._handle is None  # the hook is removed on exit


def test_peak_and_model_options():
    assert measure_peak(torch.float32, "cpu", size=64, repeats=2, min_seconds=0.0) > 0
    ap = argparse.ArgumentParser()
    add_model_options(ap)
    assert model_name(ap.parse_args([])) == "smollm2"
    assert model_name(ap.parse_args(["--model", "/some/folder"])) == "/some/folder"
    no_tiny = argparse.ArgumentParser()
    add_model_options(no_tiny, tiny=False)
    with pytest.raises(SystemExit):
        no_tiny.parse_args(["--tiny"])
