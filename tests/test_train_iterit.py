"""IterIT: the schedule with a stub scorer (hand-worked index sets), the TF-IDF greedy, and the trainer callback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datawinnow.errors import ConfigError
from datawinnow.train.iterit import IterITSchedule, select_order, tfidf_greedy, tfidf_matrix

# Stub scores per scoring call, for a pool of n = 10 with ratio 0.2 (k = 2 per epoch) and
# update_ratio 2 (rescore window = int(10 x 0.2 x 2) = 4 positions).
S0 = [0.5, 0.9, 0.8, 1.2, 0.7, 0.6, 0.95, 0.3, 0.85, 0.4]          # epoch 0: every sample
R1 = {6: 0.4, 1: 0.5, 3: 0.88, 8: 0.82}                            # after epoch 0: the window
R2 = {3: 0.45, 8: 0.42, 2: 0.81, 4: 0.9}                           # after epoch 1: the window


class Stub:
    def __init__(self):
        self.calls: list[list[int]] = []

    def __call__(self, idx):
        self.calls.append(list(idx))
        table = [dict(enumerate(S0)), R1, R2][len(self.calls) - 1]
        return np.array([table[i] for i in idx])


def _run(strategy, score_type="IFD", tfidf=None, decay=0.1):
    stub = Stub()
    s = IterITSchedule(10, stub, ratio=0.2, update_ratio=2, update_strategy=strategy, score_type=score_type,
                       tfidf=tfidf, decay=decay)
    sel = [s.start(), s.next_epoch(1), s.next_epoch(2)]
    return s, stub, sel


def test_iterative_ifd_schedule_over_three_epochs():
    stub = Stub()
    s = IterITSchedule(10, stub, ratio=0.2, update_ratio=2, update_strategy="iterative")
    assert (s.k, s.window) == (2, 4)
    # Epoch 0: candidates are IFD < 1 (sample 3 with 1.2 is not); top 2 by IFD: 6 (0.95), 1 (0.9).
    # New order: selected [6, 1], then the non-candidate 3, then the rest by IFD descending:
    # 8 (.85), 2 (.8), 4 (.7), 5 (.6), 0 (.5), 9 (.4), 7 (.3).
    assert s.start() == [6, 1]
    assert s.order == [6, 1, 3, 8, 2, 4, 5, 0, 9, 7]
    assert stub.calls[0] == list(range(10))
    # After epoch 0 the window is the first 4 positions: 6, 1, 3, 8 (rescored to .4, .5, .88, .82).
    # Epoch 1: current scores 0 .5, 1 .5, 2 .8, 3 .88, 4 .7, 5 .6, 6 .4, 7 .3, 8 .82, 9 .4 -> top 2: 3, 8.
    assert s.next_epoch(1) == [3, 8]
    assert stub.calls[1] == [6, 1, 3, 8]
    # New order: [3, 8] + (no non-candidates) + 2 (.8), 4 (.7), 5 (.6), 0 (.5), 1 (.5; tie -> lower index
    # first), 6 (.4), 9 (.4), 7 (.3); so the next window is 3, 8, 2, 4.
    assert s.order == [3, 8, 2, 4, 5, 0, 1, 6, 9, 7]
    # Epoch 2: 2 -> .81, 3 -> .45, 4 -> .9, 8 -> .42; top 2: 4 (.9), 2 (.81).
    assert s.next_epoch(2) == [4, 2]
    assert stub.calls[2] == [3, 8, 2, 4]
    assert [h["scores"] for h in s.history] == [[np.float32(0.95), np.float32(0.9)],
                                                [np.float32(0.88), np.float32(0.82)],
                                                [np.float32(0.9), np.float32(0.81)]]
    assert [h["rescored"] for h in s.history] == [10, 4, 4]
    assert s.seen() == [6, 1, 3, 8, 4, 2]


def test_baseline_schedule_never_rescores():
    s, stub, sel = _run("baseline")
    # Static epoch-0 IFD: the same top 2 (6, 1) every epoch, one scoring call only.
    assert sel == [[6, 1], [6, 1], [6, 1]]
    assert len(stub.calls) == 1 and [h["rescored"] for h in s.history] == [10, 0, 0]


def test_both_score_type_uses_diversity_greedy_each_epoch():
    # One n-gram column per "topic": samples 6 and 1 share column 0, the others have their own column,
    # sample 3 shares column 1 with sample 8. All rows have tf-idf mass 1.
    cols = {0: 2, 1: 0, 2: 3, 3: 1, 4: 4, 5: 5, 6: 0, 7: 6, 8: 1, 9: 7}
    tfidf = np.zeros((10, 8))
    for i, c in cols.items():
        tfidf[i, c] = 1.0
    s, stub, sel = _run("iterative", "BOTH", tfidf=tfidf, decay=0.0)
    # Epoch 0: value = IFD x mass: 6 (.95) first; decay 0 zeroes column 0, so 1 (.9, column 0) drops to 0;
    # next best is 8 (.85, column 1).
    assert sel[0] == [6, 8]
    # Order: [6, 8], non-candidate 3, then 1 (.9), 2 (.8), ... -> window 6, 8, 3, 1 is rescored.
    assert stub.calls[1] == [6, 8, 3, 1]
    # Epoch 1 scores: 6 .4, 8 .82, 3 .88, 1 .5 (R1); greedy: 3 (.88, column 1), then 8 shares column 1 -> 0,
    # so next is 2 (.8, column 3).
    assert sel[1] == [3, 2]


def test_tfidf_greedy_hand_worked_four_samples():
    # Columns a, b, c. IFD = [.9, .8, .5, .6], decay 0.1.
    tfidf = np.array([[1, 1, 0],    # sample 0: a b
                      [1, 0, 0],    # sample 1: a
                      [0, 0, 1],    # sample 2: c
                      [0, 1, 1]],   # sample 3: b c
                     dtype=float)
    ifd = np.array([0.9, 0.8, 0.5, 0.6])
    # Round 1, weights (1, 1, 1): values .9*2=1.8, .8*1=.8, .5*1=.5, .6*2=1.2 -> pick 0; weights (.1, .1, 1).
    # Round 2: 1 -> .8*.1=.08, 2 -> .5*1=.5, 3 -> .6*(.1+1)=.66 -> pick 3; weights (.1, .01, .1).
    # Round 3: 1 -> .8*.1=.08, 2 -> .5*.1=.05 -> pick 1; then 2.
    assert tfidf_greedy(ifd, [0, 1, 2, 3], 4, tfidf, 0.1) == [0, 3, 1, 2]
    assert tfidf_greedy(ifd, [0, 1, 2, 3], 2, tfidf, 0.1) == [0, 3]
    # IFD alone would pick 0 and 1.
    assert select_order(ifd, 2, score_type="IFD")[0] == [0, 1]
    assert select_order(ifd, 2, score_type="BOTH", tfidf=tfidf, decay=0.1)[0] == [0, 3]


def test_tfidf_on_texts_suppresses_duplicates():
    texts = ["the cat sat", "the cat sat", "dogs run fast"]
    m = tfidf_matrix(texts)
    assert m.shape == (3, 12)  # 1-3-grams: 6 + 6 (the/cat/sat, the cat, cat sat, the cat sat; dogs/run/fast, ...)
    # IFD .9, .85, .5: by IFD the duplicate comes second; with decay 0 its n-grams are zeroed after the
    # first pick, so the diverse sample is second.
    ifd = np.array([0.9, 0.85, 0.5])
    assert tfidf_greedy(ifd, [0, 1, 2], 2, m, 0.0) == [0, 2]


def test_fill_when_too_few_candidates_and_errors():
    sel, order = select_order(np.array([1.5, 0.2, 1.1, 3.0]), 2)
    # One candidate (1); filled from the non-candidates, lowest IFD first (2: 1.1).
    assert sel == [1, 2] and order == [1, 2, 0, 3]
    with pytest.raises(ConfigError, match="needs the TF-IDF matrix"):
        IterITSchedule(4, lambda i: np.zeros(len(i)), score_type="BOTH")
    with pytest.raises(ConfigError, match="update_strategy must be"):
        IterITSchedule(4, lambda i: np.zeros(len(i)), update_strategy="sometimes")
    # update_ratio <= 1 rescoring covers the whole pool
    assert IterITSchedule(100, lambda i: np.zeros(len(i)), update_ratio=1).window == 100


def test_callback_drives_the_trainer_epochs(tiny_model_dir, tmp_path):
    from datawinnow.data.record import Dataset, Record
    from datawinnow.train import TrainConfig, train

    ds = Dataset([Record(id=f"s{i}", instruction=f"Task {i}", output=f"Answer number {i}.") for i in range(10)])
    stub = Stub()
    cfg = TrainConfig(method="iterit", model=tiny_model_dir, ratio=0.2, update_ratio=2, epochs=3, batch_size=2,
                      max_length=64, progress=False)
    res = train(ds, cfg, str(tmp_path / "it"), score_fn=stub)
    served = res.info["sampler"].served
    # the trainer trained exactly on each epoch's selection (one step of 2 per epoch)
    assert [sorted(x) for x in served] == [[1, 6], [3, 8], [2, 4]]
    assert res.info["trainer"].state.global_step == 3
    assert stub.calls[1] == [6, 1, 3, 8] and stub.calls[2] == [3, 8, 2, 4]
    log = [json.loads(l) for l in (tmp_path / "it" / "iterit_log.jsonl").read_text().splitlines()]
    assert [e["ids"] for e in log] == [["s6", "s1"], ["s3", "s8"], ["s4", "s2"]]
    man = json.loads((tmp_path / "it" / "data_manifest.json").read_text())
    assert man["ids"] == ["s6", "s1", "s3", "s8", "s4", "s2"] and len(man["pool_ids"]) == 10


def test_real_ifd_scorer_runs_with_the_model_being_trained(tiny_model_dir, tmp_path):
    from datawinnow.data import load
    from datawinnow.train import TrainConfig, train

    ds = load("bundled:alpaca_en_demo")[:20]
    cfg = TrainConfig(method="iterit", model=tiny_model_dir, ratio=0.1, epochs=2, batch_size=2, max_length=96,
                      score_type="BOTH", progress=False)
    res = train(ds, cfg, str(tmp_path / "it"))
    sched = res.info["schedule"]
    assert np.isfinite(sched.scores).all() and sched.scores.dtype == np.float64
    assert [h["rescored"] for h in sched.history] == [20, 6]
    assert res.info["trainer"].model.training  # switched back after scoring
