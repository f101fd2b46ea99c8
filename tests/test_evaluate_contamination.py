"""Contamination: planted exact copies and near duplicates are found, clean pairs are not."""

from __future__ import annotations

import json

import pytest

from datawinnow.data.record import Dataset, Record
from datawinnow.errors import ConfigError
from datawinnow.evaluate.contamination import check_contamination, training_data_from_adapter

LONG_Q = ("Explain in simple terms how photosynthesis converts sunlight water and carbon dioxide into glucose "
          "and oxygen inside the chloroplasts of green plants")
NEAR_Q = "Write a short friendly email to my landlord asking whether the broken kitchen heater can be repaired this week please"
NEAR_Q2 = "Write a short friendly email to my landlord asking whether the broken kitchen heater can be repaired this week"


def _eval_items():
    return Dataset([
        Record(id="e-copy", instruction=LONG_Q, output="Plants use light."),
        Record(id="e-near", instruction=NEAR_Q, output="Dear landlord ..."),
        Record(id="e-short", instruction="Name the capital of France.", output="Paris"),
        Record(id="e-clean", instruction="List three prime numbers larger than one hundred.", output="101, 103, 107"),
        Record(id="e-clean2", instruction="Summarise the plot of a novel about a whale hunt.", output="A captain ..."),
    ])


def _train():
    return Dataset([
        # the eval question copied inside a longer training prompt (shares 13-grams, not a near duplicate)
        # (the long preamble keeps the prompts' 3-word-shingle Jaccard at 20/43, below the near-duplicate threshold)
        Record(id="t-copy", instruction="You are a patient tutor for a class of ten year old pupils, so keep it "
               f"brief and vivid. Please answer the following. {LONG_Q.upper()}!", output="Sunlight ..."),
        # the near duplicate: one word fewer at the end (Jaccard of 3-word shingles 17/18 = 0.944)
        Record(id="t-near", instruction=NEAR_Q2, output="Hello, I am writing about the heater."),
        # a short eval item (7 words with its answer, under 13) copied whole into a training text
        Record(id="t-short", instruction="Quiz: name the capital of France? Paris.", output="Correct."),
        # clean: shares topic words but no 13-gram and low Jaccard
        Record(id="t-clean", instruction="What are prime numbers? Give a definition.", output="A prime has two divisors."),
    ])


def test_planted_copies_and_near_duplicates_are_found_clean_are_not():
    report = check_contamination(_eval_items(), _train())
    hits = report.hits
    assert set(hits) == {"e-copy", "e-near", "e-short"}
    assert {(h["train_id"], h["kind"]) for h in hits["e-copy"]} == {("t-copy", "ngram")}
    # LONG_Q has 22 words: 10 of its 13-grams lie inside the training text (case and punctuation ignored)
    assert hits["e-copy"][0]["shared_ngrams"] == 22 - 13 + 1
    near = [h for h in hits["e-near"] if h["kind"] == "near"]
    assert near == [{"train_id": "t-near", "kind": "near", "jaccard": pytest.approx(17 / 18, abs=1e-4)}]
    assert [h["train_id"] for h in hits["e-short"]] == ["t-short"]
    d = report.as_dict()
    assert d["n_contaminated"] == 3 and d["by_kind"]["near"] == 1


def test_threshold_and_ngram_size_matter():
    # a stricter Jaccard threshold than 17/18 drops the near duplicate (its exact 13-grams still match)
    report = check_contamination(_eval_items(), _train(), threshold=0.95)
    assert all(h["kind"] != "near" for h in report.hits.get("e-near", []))
    # with 30-grams every item is shorter than n and is looked up whole: prompt + answer, or the prompt alone.
    # e-copy's 22-word question occurs whole in t-copy (found); e-near's 22 words are not all in t-near's 21
    # (not found, and 17/18 < 0.99 rules out the near duplicate); e-short's question occurs in t-short
    report = check_contamination(_eval_items(), _train(), n=30, threshold=0.99)
    assert set(report.hits) == {"e-copy", "e-short"}


def test_bad_options():
    with pytest.raises(ConfigError, match="n-gram size must be >= 1"):
        check_contamination(_eval_items(), _train(), n=0)
    with pytest.raises(ConfigError, match=r"Jaccard threshold must be in \(0, 1\]"):
        check_contamination(_eval_items(), _train(), threshold=1.5)


def test_training_data_from_adapter_manifest(tmp_path):
    src = tmp_path / "subset.jsonl"
    rows = [{"id": f"s{k}", "instruction": f"question {k}", "input": "", "output": f"answer {k}"} for k in range(4)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    assert training_data_from_adapter(str(adapter)) is None
    (adapter / "data_manifest.json").write_text(json.dumps({"source": str(src), "ids": ["s1", "s3"]}))
    ds = training_data_from_adapter(str(adapter))
    assert ds.ids == ["s1", "s3"]
    (adapter / "data_manifest.json").write_text(json.dumps({"source": str(tmp_path / "gone.jsonl")}))
    with pytest.raises(ConfigError, match="cannot read the training data .*gone.jsonl.* pass --train SRC"):
        training_data_from_adapter(str(adapter))


def test_training_data_from_adapter_includes_mixed_in_samples(tmp_path):
    """DELIA's manifest: the downstream ids plus cache samples (prefixed in training) read from the cache."""
    src, cache = tmp_path / "data.jsonl", tmp_path / "cache.jsonl"
    src.write_text("".join(json.dumps({"id": f"s{k}", "instruction": f"question {k}", "output": f"answer {k}"}) + "\n"
                           for k in range(3)))
    cache.write_text("".join(json.dumps({"id": f"c{k}", "messages": [
        {"role": "user", "content": f"cache query {k}"}, {"role": "assistant", "content": f"cache answer {k}"}]}) + "\n"
        for k in range(4)))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    man = {"source": str(src), "ids": ["delia:c2", "s0", "s2", "delia:c0"],
           "mixed_in": [{"source": str(cache), "id_prefix": "delia:", "ids": ["c0", "c2"]}]}
    (adapter / "data_manifest.json").write_text(json.dumps(man))
    ds = training_data_from_adapter(str(adapter))
    assert ds.ids == ["s0", "s2", "delia:c0", "delia:c2"]
    assert ds[2].prompt == "cache query 0" and ds[3].output == "cache answer 2"
    # a cache item copied into an evaluation set is found, under the id it had in training
    item = Dataset([Record(id="e1", instruction="cache query 2", output="cache answer 2")])
    assert {h["train_id"] for h in check_contamination(item, ds).hits["e1"]} == {"delia:c2"}
    # an id the source no longer holds is an error, not a silently smaller check
    man["mixed_in"][0]["ids"] = ["c0", "c9"]
    (adapter / "data_manifest.json").write_text(json.dumps(man))
    with pytest.raises(ConfigError, match=r"cache.jsonl.* no longer holds 1 of the ids it lists \(first: 'c9'\)"):
        training_data_from_adapter(str(adapter))
