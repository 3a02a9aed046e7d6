"""Text analysis and BM25 ranking for answer suggestions, in pure Python.

normalize (lowercase, no accents) -> tokenize -> drop stop words -> light stemming (suffix
stripping for Spanish and English) -> BM25 over title, body, tags and shortcut (title, tags and
shortcut count double). At a few thousand answers an in-memory index per call is fast; the
analysed terms of each answer are cached by (id, updated_at), so an edit invalidates itself.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

_WORD = re.compile(r"[^\W_]+")
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_VARIABLE = re.compile(r"\{\{[^{}]*\}\}")
_MARKUP = re.compile(r"\]\((?:https?|mailto|tel):[^)\s]*\)")  # the url half of a markdown link


def _words(text: str) -> list[str]:
    return text.split()


STOP_WORDS: dict[str, frozenset[str]] = {
    "es": frozenset(
        _words(
            """a al algo algun alguna algunas alguno algunos ante antes aqui asi cada como con contra cual cuales
        cuando de del desde donde durante e el ella ellas ellos en entre era eres es esa esas ese eso esos esta
        estan estas este esto estos estoy fue ha han has hay he la las le les lo los me mi mis muy nos nosotros
        o os otra otro para pero por porque pues que quien se sea ser si sobre sois somos son soy su sus tambien
        te tengo ti tiene tu tus u un una unas uno unos vosotros y ya yo"""
        )
    ),
    "en": frozenset(
        _words(
            """a about am an and any are as at be been being but by can could did do does doing for from had has
        have having he her here hers him his how i if in into is it its me my myself no of on or our ours
        please she should so some than that the their them then there these they this those to too us was we
        were what when where which who whom why will with would you your yours"""
        )
    ),
}

_MIN_STEM = 3


def normalize(text: str) -> str:
    """Lowercase without accents: "Sábado" -> "sabado", "Ñandú" -> "nandu"."""
    folded = text.casefold()
    if folded.isascii():
        return folded
    return _COMBINING.sub("", unicodedata.normalize("NFKD", folded))


def tokenize(text: str) -> list[str]:
    """Words of the normalized text; single letters say nothing and are dropped."""
    return [word for word in _WORD.findall(normalize(text)) if len(word) > 1 or "0" <= word <= "9"]


def base_language(language: str) -> str:
    return language.split("-", 1)[0].lower()


# Longest first; stripped repeatedly while at least three letters remain.
_ES_SUFFIXES = sorted(
    _words(
        """mente iones ion ando iendo aron ieron amos emos imos ados adas idos idas ado ada ido ida ais eis
        es ar er ir an en is as os s a o e"""
    ),
    key=len,
    reverse=True,
)


@lru_cache(maxsize=200_000)
def stem_es(word: str) -> str:
    """A light Spanish stemmer: plurals, gender, -ción/-ciones, -mente and common verb endings."""
    if word.isdigit():
        return word
    changed = True
    while changed:
        changed = False
        for suffix in _ES_SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
                word = word[: -len(suffix)]
                changed = True
                break
    return word


_VOWELS = frozenset("aeiouy")


@lru_cache(maxsize=200_000)
def stem_en(word: str) -> str:
    """A light English stemmer: plurals, -ing, -ed, -ly and a final y (Porter's step 1, simplified)."""
    if word.isdigit() or len(word) <= _MIN_STEM:
        return word
    if word.endswith("sses") or (word.endswith("ies") and len(word) > 4):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) - 1 >= _MIN_STEM:
        word = word[:-1]
    for suffix in ("ing", "ed"):
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= _MIN_STEM and any(c in _VOWELS for c in stem):
            word = stem
            if len(word) > _MIN_STEM and word[-1] == word[-2] and word[-1] not in "lsz" + "".join(_VOWELS):
                word = word[:-1]
            break
    if word.endswith("ly") and len(word) - 2 >= _MIN_STEM:
        word = word[:-2]
    if word.endswith("y") and len(word) > _MIN_STEM and word[-2] not in _VOWELS:
        word = word[:-1] + "i"
    return word


def stem(word: str, language: str) -> str:
    base = base_language(language)
    if base == "es":
        return stem_es(word)
    if base == "en":
        return stem_en(word)
    return word


def analyze(text: str, language: str, *, drop_stop_words: bool = True) -> list[str]:
    """Terms of ``text`` as the index sees them in ``language``."""
    stops = STOP_WORDS.get(base_language(language), frozenset()) if drop_stop_words else frozenset()
    return [stem(word, language) for word in tokenize(text) if word not in stops]


def query_terms(text: str, language: str) -> list[str]:
    """Distinct terms of a query; a query of nothing but stop words keeps them."""
    terms = analyze(text, language) or analyze(text, language, drop_stop_words=False)
    return list(dict.fromkeys(terms))


# Greetings and thanks open most messages but are rarely what they are about: "Hola, ¿dónde está
# mi pedido?" wants the order status, not the greeting. They weigh little beside other words.
COURTESY_WORDS: dict[str, frozenset[str]] = {
    "es": frozenset(_words("hola buenas buenos dias tardes noches gracias saludos saludo hey ey")),
    "en": frozenset(_words("hello hi hey thanks thank good morning afternoon evening greetings")),
}
COURTESY_WEIGHT = 0.2


def weighted_query(text: str, language: str) -> dict[str, float]:
    """Query terms with their weights: courtesy words count little when anything else is asked."""
    courtesy = {stem(word, language) for word in COURTESY_WORDS.get(base_language(language), frozenset())}
    terms = query_terms(text, language)
    if all(term in courtesy for term in terms):
        return dict.fromkeys(terms, 1.0)
    return {term: COURTESY_WEIGHT if term in courtesy else 1.0 for term in terms}


def strip_markup(text: str) -> str:
    """Variables and link targets say nothing about what an answer is about."""
    return _MARKUP.sub(") ", _VARIABLE.sub(" ", text))


def answer_terms(*, title: str, body: str, tags: Sequence[str], shortcut: str | None, language: str) -> Counter[str]:
    """Term frequencies of one answer; title, tags and shortcut count twice."""
    terms: Counter[str] = Counter(analyze(strip_markup(body), language))
    emphasized = analyze(title, language) + analyze(" ".join(tags), language)
    if shortcut:
        emphasized += analyze(shortcut.replace("-", " ").replace("_", " "), language, drop_stop_words=False)
    for term in emphasized:
        terms[term] += 2
    return terms


def search_text(*, title: str, body: str, tags: Sequence[str], shortcut: str | None) -> str:
    """The words and stems (both languages) an answer is found by in a list filter, space-delimited."""
    words = tokenize(" ".join([title, strip_markup(body), " ".join(tags), shortcut or ""]))
    vocabulary = dict.fromkeys(words)
    for word in words:
        vocabulary.setdefault(stem_es(word))
        vocabulary.setdefault(stem_en(word))
    return " " + " ".join(vocabulary) + " "


def filter_variants(token: str) -> set[str]:
    """The spellings of one query word a ``search_text`` may contain (as a word prefix)."""
    return {token, stem_es(token), stem_en(token)}


# --------------------------------------------------------------------------------------------
# BM25
# --------------------------------------------------------------------------------------------

K1 = 1.2
B = 0.75


@dataclass(frozen=True)
class Document:
    id: uuid.UUID
    terms: Counter[str]
    length: int


class Corpus:
    """The documents of one language as an inverted index: scoring touches only the query's terms."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.size = len(documents)
        self.average_length = (sum(doc.length for doc in documents) / self.size or 1.0) if documents else 1.0
        self.lengths = {doc.id: doc.length for doc in documents}
        self.postings: dict[str, list[tuple[uuid.UUID, int]]] = {}
        for doc in documents:
            for term, frequency in doc.terms.items():
                self.postings.setdefault(term, []).append((doc.id, frequency))

    def score(self, query: Iterable[str] | Mapping[str, float]) -> dict[uuid.UUID, float]:
        """Okapi BM25 of every document that matches at least one query term (optionally weighted)."""
        weights = query if isinstance(query, Mapping) else dict.fromkeys(query, 1.0)
        scores: dict[uuid.UUID, float] = {}
        for term, weight in weights.items():
            postings = self.postings.get(term)
            if not postings:
                continue
            idf = math.log(1 + (self.size - len(postings) + 0.5) / (len(postings) + 0.5))
            for doc_id, frequency in postings:
                length_norm = 1 - B + B * self.lengths[doc_id] / self.average_length
                gain = weight * idf * frequency * (K1 + 1) / (frequency + K1 * length_norm)
                scores[doc_id] = scores.get(doc_id, 0.0) + gain
        return scores


def bm25(query: Iterable[str] | Mapping[str, float], documents: Sequence[Document]) -> dict[uuid.UUID, float]:
    return Corpus(documents).score(query)


class TermCache:
    """Analysed answers by (id, updated_at, language): an edited answer misses and is re-analysed."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self._entries: dict[tuple[uuid.UUID, datetime, str], Document] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, key: tuple[uuid.UUID, datetime, str]) -> Document | None:
        return self._entries.get(key)

    def put(self, key: tuple[uuid.UUID, datetime, str], document: Document) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = document

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


term_cache = TermCache()
