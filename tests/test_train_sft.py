"""LoRA SFT on the tiny model: exact completion-only masking, loss goes down, adapter folder contents and loading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datawinnow.data.record import Dataset, Record
from datawinnow.errors import ConfigError, DataError
from datawinnow.train import TrainConfig, train
from datawinnow.train.collate import encode_record


def _records(n=6, repeat=1):
    base = [Record(id=f"r{i}", instruction=f"Name colour number {i}.", input="" if i % 2 else "context here",
                   output=f"The colour {i} is blue and bright.") for i in range(n)]
    return Dataset([Record(id=f"{r.id}-{k}", instruction=r.instruction, input=r.input, output=r.output)
                    for k in range(repeat) for r in base])


def test_completion_mask_is_exact_token_by_token(tiny_lm, tiny_model_dir, tmp_path):
    ds = _records(4)
    cfg = TrainConfig(model=tiny_model_dir, max_length=128, batch_size=2, max_steps=1, progress=False)
    res = train(ds, cfg, str(tmp_path / "ad"))
    prepared = res.info["trainer"].train_dataset
    tok = tiny_lm.tokenizer
    for k, r in enumerate(ds):
        prompt = tok(tiny_lm.renderer.prompt(r), add_special_tokens=False)["input_ids"]
        response = tok(r.output + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        row = prepared[k]
        assert row["input_ids"] == prompt + response
        # -100 on every prompt token, the token itself on every response token (end of turn included)
        for pos, (tid, lab) in enumerate(zip(row["input_ids"], row["labels"])):
            assert lab == (-100 if pos < len(prompt) else tid), pos
        assert tiny_lm.renderer.prompt(r).endswith("<|im_start|>assistant\n")
    # the collator keeps the mask and pads labels with -100
    batch = res.info["trainer"].data_collator([prepared[0], prepared[1]])
    n0 = len(prepared[0]["input_ids"])
    assert batch["labels"][0, :n0].tolist() == prepared[0]["labels"]
    assert (batch["labels"][0, n0:] == -100).all()


def test_truncation_keeps_assistant_header_and_response_start(tiny_lm):
    r = Record(id="long", instruction="word " * 300, output="answer " * 300)
    row = encode_record(tiny_lm.tokenizer, tiny_lm.renderer, r, 64)
    assert len(row["input_ids"]) == 64
    n_prompt = row["completion_mask"].index(1)
    assert n_prompt == 32 and sum(row["completion_mask"]) == 32
    assert tiny_lm.tokenizer.decode(row["input_ids"][:n_prompt]).endswith("<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def learnable_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with a 30x larger (frozen) LM head: with the stock init (std 0.02, hidden 32) logits
    cannot leave about +-0.6 whatever LoRA does, so the loss could barely move."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-learnable")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.lm_head.weight.mul_(30.0)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return str(folder)


def test_loss_goes_down_on_repeated_data(learnable_model_dir, tmp_path, expected_auto):
    from datawinnow.backends.device import dtype_name

    ds = _records(4, repeat=4)  # 16 rows, 4 distinct
    # device and dtype auto: the loss must go down in whatever dtype this machine trains in
    cfg = TrainConfig(model=learnable_model_dir, max_length=64, batch_size=4, epochs=6, learning_rate=2e-2,
                      rank=16, alpha=32, dropout=0.0, scheduler="constant", warmup_ratio=0.0, progress=False)
    out = tmp_path / "ad"
    res = train(ds, cfg, str(out))
    losses = [e["loss"] for e in res.log_history if "loss" in e]
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.5, losses
    # the adapter folder: adapter, tokenizer, config, manifest of the data seen, loss log
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json",
                 "datawinnow_train.json", "data_manifest.json", "train_log.jsonl"):
        assert (out / name).exists(), name
    man = json.loads((out / "data_manifest.json").read_text())
    assert man["ids"] == ds.ids and man["fingerprint"] == ds.fingerprint() and man["n"] == 16
    conf = json.loads((out / "datawinnow_train.json").read_text())
    assert conf["config"]["rank"] == 16 and conf["steps"] == 24
    assert conf["dtype"] == dtype_name(expected_auto[1]) and conf["device"].startswith(expected_auto[0])
    log = [json.loads(l) for l in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == list(range(1, 25))


def test_adapter_loads_wherever_a_model_is_accepted(tiny_model_dir, tmp_path):
    from datawinnow.backends import CausalLM

    ds = _records(4)
    # exact numbers: the trained model and the reloaded ones run on the same device in fp32
    cfg = TrainConfig(model=tiny_model_dir, max_length=64, batch_size=2, max_steps=3, learning_rate=5e-2,
                      device="cpu", dtype="fp32", progress=False)
    out = str(tmp_path / "ad")
    res = train(ds, cfg, out)
    trained = res.info["lm"]
    trained.model.eval()
    pair = trained.record_pair(ds[0])
    expect = trained.response_logprobs([pair])[0]
    base = CausalLM.load(tiny_model_dir, device="cpu", dtype="fp32")
    for lm in (CausalLM.load(f"{tiny_model_dir}+{out}", device="cpu", dtype="fp32"),
               CausalLM.load(tiny_model_dir, adapter=out, device="cpu", dtype="fp32")):
        got = lm.response_logprobs([lm.record_pair(ds[0])])[0]
        np.testing.assert_allclose(got, expect, atol=1e-5)
        assert lm.identity != base.identity
    assert np.abs(base.response_logprobs([pair])[0] - expect).max() > 1e-4  # the adapter changed something


def test_bad_options_and_data_raise_clear_errors(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="LoRA rank must be >= 1"):
        TrainConfig(rank=0).validate()
    with pytest.raises(ConfigError, match="scheduler must be one of"):
        TrainConfig(scheduler="wavy").validate()
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        train(_records(2), TrainConfig(model=tiny_model_dir, quantize="4bit", device="cpu", progress=False),
              str(tmp_path / "q"))
    bad = Dataset([Record(id="a", instruction="x", output="fine"), Record(id="b", instruction="y", output="  ")])
    with pytest.raises(DataError, match="record 'b' has an empty response"):
        train(bad, TrainConfig(model=tiny_model_dir, progress=False), str(tmp_path / "e"))


def test_cli_train_writes_adapter(tiny_model_dir, tmp_path, capsys):
    from datawinnow.cli import main
    from datawinnow.data import write

    src = tmp_path / "sub.jsonl"
    write(_records(4), str(src))
    out = tmp_path / "ad"
    rc = main(["train", str(src), "--out", str(out), "--model", tiny_model_dir, "--max-steps", "2",
               "--batch-size", "2", "--max-length", "64", "--quiet"])
    assert rc == 0 and (out / "adapter_model.safetensors").exists()
    assert "trained sft" in capsys.readouterr().out
    rc = main(["train", str(src), "--out", str(out), "--model", tiny_model_dir, "--rank", "0"])
    assert rc == 2 and "LoRA rank must be >= 1" in capsys.readouterr().err
