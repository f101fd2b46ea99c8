"""Seconds per LoRA SFT step (batch 8 x 256 tokens, embedded SmolLM2-135M): datawinnow's defaults
against a plain fp32 baseline, measured in the same run.

- datawinnow defaults: dtype from pick_dtype (bf16 on CUDA and AMX/AVX512-BF16 CPUs, fp32 on AVX2-only
  CPUs), SDPA attention, no gradient checkpointing, length-grouped batches, trl's fused LM head.
- plain fp32 baseline: fp32, eager attention, gradient checkpointing on (trl's SFTConfig default),
  random batches: trl's SFTTrainer as it comes, with bf16 switched off.

Every sequence is exactly 256 tokens (prompt 128 masked, response 128 trained), so batching by length
does not matter in the fixed-shape measurement; ``--real`` adds a run on alpaca_en_demo's real lengths
(max 256) where it does.

    .venv/bin/python benchmarks/train_step.py            # 1 warm-up + 4 timed steps per config
    .venv/bin/python benchmarks/train_step.py --quick    # 1 warm-up + 2 timed steps
    .venv/bin/python benchmarks/train_step.py --model DIR   # any local model folder (--tiny: a random tiny Llama)

Each configuration prints its achieved FLOP/s and fraction of the peak measured in the same run
(benchmarks/_common.py; a LoRA step is a forward and a backward through frozen weights, 4 x N x tokens).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from _common import FlopCounter, add_model_options, describe_peak, flops_line, model_name  # noqa: E402


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._t = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._t)

    return StepTimer()


def fixed_records(n: int):
    from datawinnow.data.record import Dataset, Record

    text = ("Selecting instruction data carefully matters because the model learns from every token it sees. "
            * 40)
    return Dataset([Record(id=f"b{i}", instruction=f"({i}) " + text, output=f"[{i}] " + text) for i in range(n)])


def measure(name: str, records, *, steps: int, baseline: bool, batch: int, max_length: int, model: str,
            peak: float) -> float:
    from datawinnow.train.config import TrainConfig
    from datawinnow.train.sft import load_model, run_sft

    cfg = TrainConfig(model=model, batch_size=batch, max_length=max_length, max_steps=steps + 1,
                      logging_steps=1000, progress=False, seed=0)
    if baseline:
        cfg.dtype, cfg.gradient_checkpointing, cfg.group_by_length = "fp32", True, False
    lm = load_model(cfg)
    if baseline:
        lm.model.set_attn_implementation("eager")
    timer = step_timer()
    with tempfile.TemporaryDirectory() as tmp, FlopCounter(lm, backward=1) as flops:
        run_sft(records, cfg, tmp, lm=lm, callbacks=[timer])
    timed = timer.times[1:]  # the first step pays one-off costs
    s = sum(timed) / len(timed)
    per_step = flops.flops / len(timer.times)
    print(f"  {name:<34} {s:7.2f} s/step  ({batch * max_length / s:7.0f} tokens/s; {flops_line(per_step, s, peak)}; "
          "steps: " + ", ".join(f"{t:.2f}" for t in timer.times) + ")", flush=True)
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per configuration (after 1 warm-up step)")
    ap.add_argument("--quick", action="store_true", help="2 timed steps")
    ap.add_argument("--real", action="store_true", help="also time alpaca_en_demo's real lengths (grouping matters)")
    add_model_options(ap)
    args = ap.parse_args()
    steps = 2 if args.quick else args.steps

    import torch

    from datawinnow.backends.device import cpu_has_fast_bf16, dtype_name, pick_device, pick_dtype

    dev = pick_device("auto")
    dt = pick_dtype("auto", dev)
    model = model_name(args)
    print(f"device {dev}, torch threads {torch.get_num_threads()}, fast bf16 CPU: {cpu_has_fast_bf16()}, "
          f"datawinnow dtype: {dtype_name(dt)}")
    peaks = {"fp32": describe_peak(dtype=torch.float32, device=dev)}
    peaks["ours"] = describe_peak(dtype=dt, device=dev, show_machine=False) if dt != torch.float32 else peaks["fp32"]
    print(f"batch 8 x 256 tokens (128 prompt + 128 response), LoRA r=8 on all linear layers, {model}")

    def both(records) -> float:
        base = measure("plain fp32 (eager, grad ckpt)", records, steps=steps, baseline=True, batch=8, max_length=256,
                       model=model, peak=peaks["fp32"])
        ours = measure("datawinnow defaults", records, steps=steps, baseline=False, batch=8, max_length=256,
                       model=model, peak=peaks["ours"])
        return base / ours

    print(f"speed-up: {both(fixed_records(8 * (steps + 1))):.2f}x  (target >= 1.7x and <= 4 s/step, set for an AMX CPU)")
    if args.real:
        from datawinnow.data import load

        print("alpaca_en_demo, real lengths (max 256), batch 8:")
        print(f"speed-up: {both(load('bundled:alpaca_en_demo')[:8 * (steps + 1) * 4]):.2f}x")

if __name__ == "__main__":
    main()
