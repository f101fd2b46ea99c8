"""IFEval through lm-eval's checkers, offline: for each instruction type a response that satisfies it and
one that violates it, judged strict and loose; the four accuracies on hand-counted results."""

from __future__ import annotations

import pytest

from datawinnow.evaluate.ifeval import check_response, load_items, summarize_ifeval
from datawinnow.evaluate.ifeval.checkers import instruction_types
from datawinnow.evaluate.ifeval.sentences import split_sentences, word_tokenize

ENGLISH_LOWER = "the quick brown fox jumps over the lazy dog while the farmer watches from the old wooden barn."

# (instruction id, kwargs, satisfying response, violating response)
CASES = [
    ("punctuation:no_comma", {}, "Apples are red and bananas are yellow.", "Apples are red, bananas are yellow."),
    ("change_case:english_lowercase", {}, ENGLISH_LOWER, ENGLISH_LOWER.capitalize()),
    ("change_case:english_capital", {}, ENGLISH_LOWER.upper(), ENGLISH_LOWER),
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "THIS IS VERY important.", "This is VERY important."),
    ("detectable_format:title", {}, "<<A Poem About Rain>>\nRain falls.", "A Poem About Rain\nRain falls."),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* one\n* two\n* three", "* one\n* two"),
    ("detectable_format:json_format", {}, '```json\n{"name": "Ada", "age": 36}\n```', "name: Ada, age: 36"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "This is *important* and *urgent*.", "This is *important* only."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "See you soon.\nP.S. bring snacks.",
     "See you soon. Bring snacks."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Send it to [name] at [address].",
     "Send it to [name]."),
    ("keywords:existence", {"keywords": ["apple", "pear"]}, "An apple and a pear.", "An apple and a plum."),
    ("keywords:forbidden_words", {"forbidden_words": ["banana"]}, "I like fruit.", "I like Banana bread."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"},
     "A cat met another cat.", "A cat met a dog."),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "less than"},
     "Buzz off.", "Zebras zigzag lazily."),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "Short and sweet.",
     "This answer has far too many words in it."),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"},
     "Dr. Smith arrived at 3 p.m. on Monday.", "He came. He saw. He left."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First part.\n***\nSecond part.",
     "Only one part here, no separator."),
    ("startend:quotation", {}, '"Wrapped in double quotes."', "Not wrapped in quotes."),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Here is the answer. Any other questions?",
     "Any other questions? Here is the answer."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a haiku."}, "Write a haiku. Leaves fall slowly down.",
     "Leaves fall slowly down."),
    ("combination:two_responses", {}, "Yes it is.\n******\nNo it is not.", "Yes it is."),
    ("language:response_language", {"language": "en"}, ENGLISH_LOWER,
     "le renard brun rapide saute par-dessus le chien paresseux pendant que le fermier regarde."),
]


def test_all_25_instruction_types_load_offline():
    types = instruction_types()
    assert len(types) == 25
    assert {c[0] for c in CASES} <= set(types)
    assert len({c[0] for c in CASES}) >= 10


@pytest.mark.parametrize("iid, kwargs, good, bad", CASES, ids=[c[0] for c in CASES])
def test_checker_satisfied_and_violated_strict_and_loose(iid, kwargs, good, bad):
    ok = check_response("prompt", [iid], [kwargs], good)
    assert ok["strict"] == [True] and ok["loose"] == [True] and ok["prompt_strict"] and ok["prompt_loose"]
    no = check_response("prompt", [iid], [kwargs], bad)
    assert no["strict"] == [False] and no["loose"] == [False]
    assert not no["prompt_strict"] and not no["prompt_loose"]


def test_loose_forgives_a_preamble_line_and_markdown_strict_does_not():
    # quotation: a chatty first line breaks strict; loose removes the first line
    r = check_response("p", ["startend:quotation"], [{}], 'Sure, here it is:\n"Wrapped in double quotes."')
    assert r["strict"] == [False] and r["loose"] == [True]
    # end phrase followed by a sign-off line: loose removes the last line
    r = check_response("p", ["startend:end_checker"], [{"end_phrase": "Any other questions?"}],
                       "Answer. Any other questions?\n-- bot")
    assert r["strict"] == [False] and r["loose"] == [True]
    # markdown bold around the required last words: loose removes '*'
    r = check_response("p", ["startend:end_checker"], [{"end_phrase": "Any other questions?"}],
                       "Answer. **Any other questions?**")
    assert r["strict"] == [False] and r["loose"] == [True]


def test_empty_response_follows_nothing():
    r = check_response("p", ["punctuation:no_comma"], [{}], "   ")
    assert r["strict"] == [False] and r["loose"] == [False]


def test_accuracies_prompt_and_instruction_level():
    # prompt 1: two instructions, both followed strictly -> prompt strict True
    # prompt 2: two instructions, one followed strictly (comma present), loose same -> prompt False
    # prompt 3: one instruction, strict False, loose True (preamble line)
    rows = [
        check_response("p", ["punctuation:no_comma", "keywords:existence"], [{}, {"keywords": ["cat"]}], "A cat."),
        check_response("p", ["punctuation:no_comma", "keywords:existence"], [{}, {"keywords": ["cat"]}], "A cat, yes."),
        check_response("p", ["startend:quotation"], [{}], 'Here:\n"quoted"'),
    ]
    s = summarize_ifeval(rows)
    # prompt strict 1/3, prompt loose 2/3; instructions strict: (2 + 1 + 0) / 5, loose (2 + 1 + 1) / 5
    assert s["prompt_level_strict_acc"] == pytest.approx(1 / 3)
    assert s["prompt_level_loose_acc"] == pytest.approx(2 / 3)
    assert s["inst_level_strict_acc"] == pytest.approx(3 / 5)
    assert s["inst_level_loose_acc"] == pytest.approx(4 / 5)
    assert s["by_instruction_strict"]["punctuation:no_comma"] == pytest.approx(0.5)


def test_bundled_items_and_no_download_tokenizers():
    items = load_items()
    assert len(items) == 541
    assert isinstance(items[0].meta["kwargs"], list)
    assert split_sentences("Dr. Smith met Mr. Jones at 5 p.m. today. They talked! Did it help? Yes.") == [
        "Dr. Smith met Mr. Jones at 5 p.m. today.", "They talked!", "Did it help?", "Yes."]
    assert word_tokenize("HELLO there. I AM here.") == ["HELLO", "there", ".", "I", "AM", "here", "."]
