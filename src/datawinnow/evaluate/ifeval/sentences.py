"""Sentence and word tokenizers that need no downloaded data (NLTK's punkt models are not available offline).

IFEval's sentence-count checker uses NLTK's *pretrained* English punkt model, and its capital-word
checker uses ``nltk.word_tokenize`` (which needs the same model). Both are replaced here by the same
punkt algorithm (Kiss & Strunk) with *untrained* parameters plus a fixed list of common English
abbreviations, so "Dr. Smith" or "e.g. this" do not end a sentence. Deviation from the pretrained
model: abbreviations and collocations that model learned from its corpus, and that are not in the
list below, count as sentence ends. Word tokenization is NLTK's Treebank tokenizer applied to each
of those sentences, exactly as ``nltk.word_tokenize`` does with the pretrained model.
"""

from __future__ import annotations

import functools

ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "capt", "col", "gen", "lt", "sgt", "rev",
    "gov", "sen", "rep", "pres", "hon", "inc", "ltd", "co", "corp", "dept", "univ", "assn", "bros",
    "e.g", "i.e", "etc", "vs", "cf", "al", "approx", "fig", "no", "vol", "pp", "ed", "eds", "est",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "mon", "tue", "wed", "thu", "fri", "sat", "sun", "a.m", "p.m", "u.s", "u.k", "d.c", "ph.d", "b.a", "m.a",
})


@functools.lru_cache(maxsize=1)
def sentence_tokenizer():
    """An untrained punkt tokenizer with :data:`ABBREVIATIONS` (needs no data files)."""
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(ABBREVIATIONS)
    return PunktSentenceTokenizer(params)


def split_sentences(text: str) -> list[str]:
    return sentence_tokenizer().tokenize(text)


@functools.lru_cache(maxsize=1)
def _treebank():
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def word_tokenize(text: str, language: str = "english", preserve_line: bool = False) -> list[str]:
    """``nltk.word_tokenize`` with the no-download sentence splitter."""
    sentences = [text] if preserve_line else split_sentences(text)
    tok = _treebank()
    return [t for s in sentences for t in tok.tokenize(s)]
