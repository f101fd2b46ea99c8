"""The evaluation runner end to end on the tiny model: suites, contamination filter, ICL, caching, JSON, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datawinnow.backends.embedder import Embedder
from datawinnow.backends.judge import Judge
from datawinnow.cli import main
from datawinnow.data import load
from datawinnow.data.record import Dataset, Record
from datawinnow.evaluate import EvalSession, GenerationParams, evaluate
from datawinnow.evaluate.icl import ICLExamples, icl_user_text
from datawinnow.evaluate.results import summary_table
from datawinnow.runtime.context import Context

VOCAB = ["cat", "dog", "car", "rain", "code"]


class KeywordEmbedder(Embedder):
    """Unit vectors of keyword counts (plus a constant so no text is the zero vector)."""

    def __init__(self):
        self.identity = "keywords"

    def encode(self, texts, *, batch_size=32, progress=False):
        v = np.array([[t.lower().count(w) for w in VOCAB] + [0.1] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


class RubricAndPairJudge(Judge):
    identity = "fake-judge"

    def __init__(self):
        self.calls = 0

    def chat(self, conversations, *, max_tokens=256, temperature=0.0):
        self.calls += len(conversations)
        out = []
        for c in conversations:
            if "Output (A)" in c[-1]["content"]:
                out.append("A")
            else:
                out.append("\n".join(f"{d}: 3" for d in ["Instruction Following", "Accuracy", "Relevance",
                                                         "Completeness", "Depth", "Clarity", "Creativity",
                                                         "Helpfulness"]))
        return out


def _session(tiny_lm, *, judge=None, icl=None, limit=3, data=None):
    ctx = Context(model=tiny_lm, embedder=KeywordEmbedder(), progress=False, batch_size=4)
    return EvalSession(ctx, gen=GenerationParams(), max_new_tokens=6, judge=judge, icl=icl, limit=limit, data=data)


def test_all_local_suites_with_contamination_filter(tiny_lm, tmp_path):
    ref = load("bundled:alpaca_eval_gpt4_baseline")
    first = ref[0]
    # training data holding a verbatim copy of the first AlpacaEval item: it must be left out everywhere
    train = Dataset([Record(id="leak", instruction=first.instruction, output=first.output),
                     Record(id="ok", instruction="Unrelated question about knitting.", output="Use wool.")],
                    path="train.jsonl")
    judge = RubricAndPairJudge()
    out = tmp_path / "results.json"
    res = evaluate(["generation", "rubric", "winrate", "ifeval", "arc_easy"], _session(tiny_lm, judge=judge),
                   train=[train], out=str(out))
    cont = res["contamination"]
    assert cont["checked"] and cont["hits"] == {first.id: [{"train_id": "leak", "kind": "ngram",
                                                            "shared_ngrams": pytest.approx(cont["hits"][first.id][0]["shared_ngrams"])},
                                                           {"train_id": "leak", "kind": "near", "jaccard": 1.0}]}
    gen = res["suites"]["generation"]
    assert gen["summary"]["n"] == 2 and first.id not in [r["id"] for r in gen["items"]]
    assert gen["info"]["contaminated_items"] == [first.id]
    assert all(0.0 <= r["rouge1"] <= 1.0 and -1.0 <= r["similarity"] <= 1.0 for r in gen["items"])
    rub = res["suites"]["rubric"]["summary"]
    assert rub["n"] == 2 and rub["mean"] == 3.0 and rub["depth"] == 3.0
    win = res["suites"]["winrate"]["summary"]
    assert win["win_rate"] == pytest.approx(50.0) and win["judge_prefers_first"] == 1.0
    ife = res["suites"]["ifeval"]["summary"]
    assert ife["n"] == 3 and 0.0 <= ife["prompt_level_strict_acc"] <= ife["prompt_level_loose_acc"] <= 1.0
    arc = res["suites"]["arc_easy"]["summary"]
    assert arc["n"] == 3 and 0.0 <= arc["acc"] <= 1.0
    on_disk = json.loads(out.read_text())
    assert set(on_disk["suites"]) == {"generation", "rubric", "winrate", "ifeval", "arc_easy"}
    table = summary_table(on_disk)
    assert "win_rate" in table and "prompt_level_strict_acc" in table and "1 of" in table

    # second run: generations, judge verdicts and choice scores come from the cache
    calls = judge.calls
    res2 = evaluate(["generation", "rubric", "winrate", "arc_easy"], _session(tiny_lm, judge=judge), train=[train])
    assert judge.calls == calls
    assert res2["suites"]["generation"]["info"]["computed"] == 0
    assert res2["suites"]["rubric"]["info"]["judging"]["computed"] == 0
    assert res2["suites"]["generation"]["items"] == gen["items"]


def test_allow_contaminated_keeps_and_flags(tiny_lm):
    ref = load("bundled:alpaca_eval_gpt4_baseline")
    train = Dataset([Record(id="leak", instruction=ref[1].instruction, output=ref[1].output)])
    res = evaluate(["generation"], _session(tiny_lm, limit=2), train=[train], allow_contaminated=True)
    rows = res["suites"]["generation"]["items"]
    assert [r.get("contaminated", False) for r in rows] == [False, True]


def test_no_training_data_is_reported_not_checked(tiny_lm):
    res = evaluate(["arc_easy"], _session(tiny_lm, limit=2))
    assert res["contamination"]["checked"] is False and "--train" in res["contamination"]["reason"]


def test_judge_suite_without_judge_is_a_clear_error(tiny_lm):
    from datawinnow.errors import ConfigError

    with pytest.raises(ConfigError, match="this suite needs a judge"):
        evaluate(["rubric"], _session(tiny_lm, limit=1))
    with pytest.raises(ConfigError, match="unknown evaluation suite 'nope'"):
        evaluate(["nope"], _session(tiny_lm))


def test_reference_suite_needs_references(tiny_lm):
    from datawinnow.errors import DataError

    data = Dataset([Record(id="a", instruction="q", output="x"), Record(id="b", instruction="q2", output="")],
                   path="mine.jsonl")
    with pytest.raises(DataError, match="mine.jsonl, line 2, field 'output': this evaluation needs a reference"):
        evaluate(["generation"], _session(tiny_lm, data=data))


# ---------------------------------------------------------------------------------------------- ICL
def _subset():
    return Dataset([
        Record(id="s-dog", instruction="Tell me about the dog.", output="Dogs bark."),
        Record(id="s-cat", instruction="Tell me about the cat.", output="Cats purr."),
        Record(id="s-car", instruction="How does a car engine work?", output="Fuel burns."),
        Record(id="s-catdog", instruction="Compare a cat and a dog.", output="Both are pets."),
    ], path="subset.jsonl")


def test_icl_nearest_examples_golden(tiny_lm):
    # keyword vectors (cat, dog, car, rain, code, 0.1), unit-normalised. Query "My cat sleeps": (1,0,0,0,0,.1)
    # cosine with s-cat (1,0,0,0,0,.1) = 1; with s-catdog (1,1,0,0,0,.1): 1.01/sqrt(1.01*2.01) = 0.709;
    # with s-dog and s-car: 0.01/1.01 = 0.0099 each (tie: subset order, s-dog first).
    icl = ICLExamples(_subset(), KeywordEmbedder(), k=3, max_tokens=10_000)
    q = Record(id="q", instruction="My cat sleeps all day.")
    assert icl.neighbours([q]) == [[1, 3, 0]]
    (text, used), = icl.prompts(tiny_lm, [q])
    assert used == ["s-cat", "s-catdog", "s-dog"]
    user = icl_user_text(q, [_subset()[1], _subset()[3], _subset()[0]])
    # the nearest example sits right before the query
    assert user.index("Dogs bark.") < user.index("Both are pets.") < user.index("Cats purr.") < user.index("Query:")
    assert user in text


def test_icl_drops_farthest_examples_to_fit(tiny_lm):
    q = Record(id="q", instruction="My cat sleeps all day.")
    full = ICLExamples(_subset(), KeywordEmbedder(), k=3, max_tokens=10_000).prompts(tiny_lm, [q])[0][0]
    budget = len(tiny_lm.encode(full)) - 1
    (text, used), = ICLExamples(_subset(), KeywordEmbedder(), k=3, max_tokens=budget).prompts(tiny_lm, [q])
    assert used == ["s-cat", "s-catdog"] and len(tiny_lm.encode(text)) <= budget


def test_icl_evaluation_records_examples_and_checks_subset_contamination(tiny_lm):
    ref = load("bundled:alpaca_eval_gpt4_baseline")
    subset = Dataset(list(_subset()) + [Record(id="s-leak", instruction=ref[0].instruction, output=ref[0].output)],
                     path="subset.jsonl")
    icl = ICLExamples(subset, KeywordEmbedder(), k=2, max_tokens=4000)
    res = evaluate(["generation"], _session(tiny_lm, icl=icl, limit=3), train=[subset])
    rows = res["suites"]["generation"]["items"]
    assert [r["id"] for r in rows] == ref.ids[1:3]
    assert all(len(r["icl_examples"]) == 2 for r in rows)
    assert res["suites"]["generation"]["info"]["generation"]["max_new_tokens"] == 6


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_evaluate_multiple_choice_and_ifeval(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    train = tmp_path / "train.jsonl"
    first = load("bundled:arc_easy_validation")[0]
    train.write_text(json.dumps({"instruction": first.instruction, "input": "", "output": first.output}) + "\n")
    rc = main(["evaluate", "--model", tiny_model_dir, "--suite", "arc_easy", "--suite", "ifeval", "--limit", "3",
               "--max-new-tokens", "4", "--train", str(train), "--quiet", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "arc_easy" in printed and "acc_norm" in printed and "contamination: 1 of 6" in printed
    res = json.loads(out.read_text())
    assert res["suites"]["arc_easy"]["summary"]["n"] == 2 and res["suites"]["ifeval"]["summary"]["n"] == 3
    assert res["train"] == [str(train)]


def test_cli_errors_are_one_line(tiny_model_dir, tmp_path, capsys):
    assert main(["evaluate", "--model", tiny_model_dir, "--suite", "nope", "--out", str(tmp_path / "x.json")]) == 2
    assert "datawinnow: error: unknown evaluation suite 'nope'" in capsys.readouterr().err
    assert main(["evaluate", "--suite", "arc_easy"]) == 2
    assert "--out results.json is required" in capsys.readouterr().err
    assert main(["evaluate", "--model", tiny_model_dir, "--suite", "arc_easy", "--limit", "0",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "--limit must be >= 1" in capsys.readouterr().err


def test_cli_judge_suites_with_local_judge(tiny_model_dir, tmp_path, capsys):
    # the tiny random model as a local judge: its rubric replies are not parseable (items fail, no default
    # score); the win rate reads its token probabilities over "A"/"B" in both orders
    out = tmp_path / "j.json"
    rc = main(["evaluate", "--model", tiny_model_dir, "--suite", "rubric", "--suite", "winrate", "--limit", "2",
               "--max-new-tokens", "4", "--judge", "local", "--quiet", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    res = json.loads(out.read_text())
    rub = res["suites"]["rubric"]
    assert rub["summary"]["n"] + rub["summary"]["n_failed"] == 2
    assert all(("error" in r) != ("mean" in r) for r in rub["items"])
    win = res["suites"]["winrate"]
    assert win["info"]["verdicts_from"] == "token probabilities"
    assert 0.0 <= win["summary"]["win_rate"] <= 100.0
    assert all(0.0 <= r["model_first"] <= 1.0 for r in win["items"])


def test_cli_judge_suite_without_judge(tiny_model_dir, tmp_path, capsys):
    rc = main(["evaluate", "--model", tiny_model_dir, "--suite", "winrate", "--limit", "1", "--max-new-tokens", "2",
               "--quiet", "--out", str(tmp_path / "x.json")])
    assert rc == 2 and "this suite needs a judge: pass --judge local" in capsys.readouterr().err
