"""HellaSwag and WinoGrande: the harness's preprocessing worked by hand, golden choices against a plain
transformers forward pass over the full strings, the bundled items, contamination and the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from datawinnow.cli import main
from datawinnow.data.record import Dataset, Record
from datawinnow.evaluate import EvalSession, evaluate
from datawinnow.evaluate import hellaswag, winogrande
from datawinnow.evaluate.loglikelihood import request_pair
from datawinnow.runtime.context import Context


# ------------------------------------------------------------------------------------------ preprocessing
@pytest.mark.parametrize("raw, clean", [
    # strip; " [title]" -> ". "; "[header]" and "[step]" deleted; the double space left by "[step]" -> one
    ("  [header] How to do X [title] Choose a base. [step] Colors work.  ",
     " How to do X. Choose a base. Colors work."),
    # "[title]" without a space before it is not turned into ". ", only deleted
    ("[title] Foo bar", " Foo bar"),
    # shortest match per bracket pair: the text between two artefacts stays
    ("keep [a] this [b] too", "keep this too"),
    # one replacement pass: three spaces become two ("  " -> " " once, then " " + " " is left)
    ("a [x]  b", "a  b"),
    ("[substeps] Stick to one color.", " Stick to one color."),
    ("No artefacts here.", "No artefacts here."),
])
def test_hellaswag_preprocess_by_hand(raw, clean):
    assert hellaswag.preprocess(raw) == clean


def test_hellaswag_query_by_hand():
    # activity_label + ": " + ctx_a + " " + ctx_b.capitalize() (the rest of ctx_b lower-cased), then preprocessed
    row = {"activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he MAN"}
    assert hellaswag.query(row) == "Roof shingle removal: A man is sitting on a roof. He man"
    # a WikiHow row: empty ctx_b leaves a trailing space, which the strip removes; " [title]" -> ". "
    row = {"activity_label": "Personal Care and Style", "ctx_b": "",
           "ctx_a": "[header] How to do a french manicure [title] Prepare your nails. [step] Start clean."}
    assert hellaswag.query(row) == ("Personal Care and Style: How to do a french manicure. Prepare your nails. "
                                    "Start clean.")


def test_hellaswag_bundled_items():
    items = hellaswag.load_items()
    assert len(items) == 10042 and len(set(items.ids)) == 10042
    first = items[0]
    assert first.id == "hellaswag-0" and first.prompt == "Roof shingle removal: A man is sitting on a roof. He"
    assert first.meta["answer"] == 3 and first.output == "starts pulling up roofing on a roof."
    assert first.meta["source"] == "activitynet" and items[3243].meta["source"] == "wikihow"
    # no bracketed artefact survives (5 texts keep an unmatched "[", as in the harness)
    texts = [t for r in items for t in [r.prompt, *r.meta["choices"]]]
    assert not any(re.search(r"\[.*?\]", t) for t in texts) and sum("[" in t for t in texts) == 5
    assert hellaswag.requests(first)[3] == (first.prompt, " starts pulling up roofing on a roof.")


def test_winogrande_partial_request_by_hand():
    s = "Sarah was a much better surgeon than Maria so _ always got the harder cases."
    assert winogrande.partial_request(s, "Maria") == ("Sarah was a much better surgeon than Maria so Maria",
                                                      " always got the harder cases.")
    # the rest is stripped, then one space goes before it
    assert winogrande.partial_request("I gave it to _ .  ", "Tom") == ("I gave it to Tom", " .")


def test_winogrande_bundled_items():
    items = winogrande.load_items()
    assert len(items) == 1267 and items[0].id == "winogrande-0"
    assert items[1].meta == {"choices": ["Sarah", "Maria"], "answer": 0} and items[1].output == "Sarah"
    assert winogrande.requests(items[1]) == [
        ("Sarah was a much better surgeon than Maria so Sarah", " always got the harder cases."),
        ("Sarah was a much better surgeon than Maria so Maria", " always got the harder cases.")]


def test_malformed_winogrande_row_names_the_problem():
    with pytest.raises(ValueError, match="exactly one blank"):
        winogrande.item_from_row({"sentence": "No blank.", "option1": "a", "option2": "b", "answer": "1"}, 0)


def test_trailing_context_space_moves_to_the_continuation(tiny_lm):
    a = request_pair(tiny_lm, "The sky is ", "blue")
    b = request_pair(tiny_lm, "The sky is", " blue")
    assert (a.prompt, a.response) == (b.prompt, b.response)
    assert a.prompt + a.response == tiny_lm.tokenizer("The sky is blue")["input_ids"]


# ------------------------------------------------------------------------------------------ golden
def _reference_logliks(model_dir, requests):
    """Summed log p(continuation | context) from a plain transformers forward over the full string; the
    continuation's tokens are the full string's tokens after the context's own."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    for context, continuation in requests:
        full = tok(context + continuation)["input_ids"]
        n_ctx = len(tok(context)["input_ids"])
        assert full[:n_ctx] == tok(context)["input_ids"]  # no token spans the boundary in these items
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([full])).logits[0].double(), dim=-1)
        out.append(sum(float(logp[t - 1, full[t]]) for t in range(n_ctx, len(full))))
    return out


HS_ROWS = [
    {"activity_label": "Making a sandwich", "ctx_a": "A man puts bread on a plate.", "ctx_b": "he",
     "endings": ["adds cheese and ham.", "flies to the moon [title] and back.", "eats.",
                 "writes a long letter to the bank."]},
    {"activity_label": "Personal Care and Style", "ctx_b": "",
     "ctx_a": "[header] How to wash hair [title] Wet your hair. [step] Use warm water.",
     "endings": ["[substeps] Apply a small amount of shampoo.", "Dry it.", "Buy a new car today.", "Sing."]},
    {"activity_label": "Running", "ctx_a": "A woman ties her shoes.", "ctx_b": "She",
     "endings": ["runs down the road.", "is.", "cooks dinner for the whole family tonight.", "reads a book."]},
    {"activity_label": "Painting", "ctx_a": "The kids open the paint cans.", "ctx_b": "they",
     "endings": ["paint the fence white.", "go.", "sleep.", "explain the history of the local art museum."]},
]
HS_LABELS = [1, 0, 1, 0]


def test_hellaswag_golden(tiny_lm, tiny_model_dir):
    rows = [{**r, "label": str(lab), "source_id": "test~1", "split_type": "indomain"}
            for r, lab in zip(HS_ROWS, HS_LABELS)]
    items = Dataset([hellaswag.item_from_row(r, k) for k, r in enumerate(rows)])
    # the reference: query and " " + ending written out here, from the rows, not from the module's records
    queries = ["Making a sandwich: A man puts bread on a plate. He",
               "Personal Care and Style: How to wash hair. Wet your hair. Use warm water.",
               "Running: A woman ties her shoes. She",
               "Painting: The kids open the paint cans. They"]
    endings = [["adds cheese and ham.", "flies to the moon. and back.", "eats.", "writes a long letter to the bank."],
               [" Apply a small amount of shampoo.", "Dry it.", "Buy a new car today.", "Sing."],
               ["runs down the road.", "is.", "cooks dinner for the whole family tonight.", "reads a book."],
               ["paint the fence white.", "go.", "sleep.", "explain the history of the local art museum."]]
    ref = np.array(_reference_logliks(tiny_model_dir, [(q, " " + e) for q, es in zip(queries, endings) for e in es]))
    ref = ref.reshape(4, 4)
    chars = np.array([[len(e) for e in es] for es in endings], dtype=float)
    pred, pred_norm = ref.argmax(1), (ref / chars).argmax(1)
    assert (pred != pred_norm).any()  # the items tell the two accuracies apart

    out, _ = hellaswag.score(tiny_lm, items, ctx=Context(model=tiny_lm, progress=False, batch_size=3))
    np.testing.assert_allclose([r["loglik"] for r in out], ref, rtol=1e-4, atol=1e-4)
    assert [r["pred"] for r in out] == pred.tolist() and [r["pred_norm"] for r in out] == pred_norm.tolist()
    assert [r["chars"] for r in out] == chars.astype(int).tolist()
    s = hellaswag.summarize(out)
    assert s["n"] == 4
    assert s["acc"] == pytest.approx(np.mean(pred == HS_LABELS))
    assert s["acc_norm"] == pytest.approx(np.mean(pred_norm == HS_LABELS))


WG_ROWS = [
    {"sentence": "The trophy did not fit in the suitcase because the _ was too big.",
     "option1": "trophy", "option2": "suitcase"},
    {"sentence": "Anna helped Maria because _ had more free time that week.", "option1": "Anna", "option2": "Maria"},
    {"sentence": "The cat chased the dog until the _ got tired and lay down.", "option1": "cat", "option2": "dog"},
    {"sentence": "He poured the water from the bottle into the cup until the _ was full.",
     "option1": "bottle", "option2": "cup"},
]


def test_winogrande_golden(tiny_lm, tiny_model_dir):
    # the reference: the filled prefixes and the shared continuation written out by hand
    requests = [("The trophy did not fit in the suitcase because the trophy", " was too big."),
                ("The trophy did not fit in the suitcase because the suitcase", " was too big."),
                ("Anna helped Maria because Anna", " had more free time that week."),
                ("Anna helped Maria because Maria", " had more free time that week."),
                ("The cat chased the dog until the cat", " got tired and lay down."),
                ("The cat chased the dog until the dog", " got tired and lay down."),
                ("He poured the water from the bottle into the cup until the bottle", " was full."),
                ("He poured the water from the bottle into the cup until the cup", " was full.")]
    ref = np.array(_reference_logliks(tiny_model_dir, requests)).reshape(4, 2)
    pred = ref.argmax(1)
    assert (np.abs(ref[:, 0] - ref[:, 1]) > 1e-3).all()  # no near ties
    # label every item with the reference's choice except the last: acc must come out 3/4
    answers = [str(p + 1) for p in pred[:3]] + [str(2 - pred[3])]
    items = Dataset([winogrande.item_from_row({**r, "answer": a}, k) for k, (r, a) in enumerate(zip(WG_ROWS, answers))])
    out, _ = winogrande.score(tiny_lm, items, ctx=Context(model=tiny_lm, progress=False, batch_size=3))
    np.testing.assert_allclose([r["loglik"] for r in out], ref, rtol=1e-4, atol=1e-4)
    assert [r["pred"] for r in out] == pred.tolist()
    assert [r["correct"] for r in out] == [True, True, True, False]
    s = winogrande.summarize(out)
    assert s["acc"] == pytest.approx(0.75) and s["acc_stderr"] == pytest.approx(np.sqrt(0.75 * 0.25 / 3))


def test_scores_are_cached(tiny_lm):
    items = winogrande.load_items()[:3]
    ctx = Context(model=tiny_lm, progress=False)
    _, first = winogrande.score(tiny_lm, items, ctx=ctx)
    _, second = winogrande.score(tiny_lm, items, ctx=ctx)
    assert first["computed"] == 3 and second["computed"] == 0 and second["cached"] == 3


# ------------------------------------------------------------------------------------------ suites
def test_suites_limit_and_contamination_filter(tiny_lm):
    hs = hellaswag.load_items()
    copied = Record(id="t1", instruction=hs[1].prompt, output=hs[1].output)
    session = EvalSession(Context(model=tiny_lm, progress=False, batch_size=8), limit=4)
    res = evaluate(["hellaswag", "winogrande"], session, train=[Dataset([copied])])
    h, w = res["suites"]["hellaswag"], res["suites"]["winogrande"]
    assert [r["id"] for r in h["items"]] == ["hellaswag-0", "hellaswag-2", "hellaswag-3"]
    assert h["info"]["contaminated_items"] == ["hellaswag-1"] and res["contamination"]["n_contaminated"] == 1
    assert [r["id"] for r in w["items"]] == [f"winogrande-{k}" for k in range(4)]
    assert set(h["summary"]) >= {"acc", "acc_norm", "by_source", "by_split_type"} and w["summary"]["n"] == 4
    # experiment configs may name both: their per-item primary scores (acc_norm, acc) average to the summary
    from datawinnow.experiments.cells import extract_scores

    for name, res_, metric in (("hellaswag", h, "acc_norm"), ("winogrande", w, "acc")):
        scores = extract_scores(name, res_)
        assert np.mean([i["score"] for i in scores["items"]]) == pytest.approx(res_["summary"][metric])


def test_cli_runs_both_suites(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["evaluate", "--model", tiny_model_dir, "--device", "cpu", "--dtype", "fp32", "--suite", "hellaswag",
                 "--suite", "winogrande", "--limit", "2", "--out", str(out), "--quiet"])
    assert code == 0
    table = capsys.readouterr().out
    assert re.search(r"^hellaswag +acc_norm ", table, re.M) and re.search(r"^winogrande +acc ", table, re.M)
    res = json.loads(out.read_text())
    assert res["suites"]["hellaswag"]["summary"]["n"] == 2 and res["suites"]["winogrande"]["summary"]["n"] == 2
    main(["evaluate", "--list"])
    listed = capsys.readouterr().out
    assert "hellaswag" in listed and "winogrande" in listed


def test_requests_match_lm_eval_itself(tiny_lm, tiny_model_dir):
    # the harness's own HF model on the same requests (real bundled items, both suites): same log-likelihoods
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    harness = HFLM(pretrained=tiny_model_dir, device="cpu", dtype="float32", batch_size=4)
    hs, wg = hellaswag.load_items(), winogrande.load_items()
    for mod, items in ((hellaswag, Dataset([hs[0], hs[3243], hs[9000]])), (winogrande, wg[:4])):
        reqs = [q for r in items for q in mod.requests(r)]
        ref = [ll for ll, _ in harness.loglikelihood(
            [Instance(request_type="loglikelihood", doc={}, arguments=q, idx=k) for k, q in enumerate(reqs)],
            disable_tqdm=True)]
        out, _ = mod.score(tiny_lm, items, ctx=Context(model=tiny_lm, progress=False))
        # float32 sums over ~125 tokens of about -6 each differ by up to ~1e-4 relative; one token more or less
        # would move a sum by several nats
        np.testing.assert_allclose([x for r in out for x in r["loglik"]], ref, rtol=5e-4, atol=1e-3)
