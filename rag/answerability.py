"""Do the passages state what the question asks, or only talk about its topic?

A question on the topic of the library whose specific fact (a default, a version, an option, a
date) is missing still finds passages close in meaning; their score alone cannot tell. This
module reads the evidence sentence by sentence, with the embedding model already loaded:

- the question's focus: the kind of value it asks for (a number, a version, a date, a name such as
  an option, a file or a command) and whether it asks for a default;
- key terms: identifiers, option names, versions and quoted words the question names, which a
  passage about the same thing has to mention;
- support: how close the best sentence is in meaning, plus how many of the question's
  distinctive words (IDF-weighted) its neighbourhood shares; and the same for the best sentence
  that states a value of the asked kind.

`judge` turns these signals into a refusal and a one-line reason. Thresholds are settings,
calibrated with `rag eval` (docs/quality.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rag.answer import SourceRef
from rag.evidence import cosine, sentence_spans
from rag.keyword import FUNCTION_WORDS, tokenize
from rag.settings import Settings

# How much the word coverage of a sentence's neighbourhood adds to its similarity in `support`.
COVERAGE_WEIGHT = 0.5
# At most this many sentences are compared (the best passages first): bounds the embedding cost.
MAX_SENTENCES = 120

# The kind of value a question asks for, from its wording (English and Indonesian). Checked in
# this order: "which version" is a version, not a name; "how many" is a number.
_NOUNS_NUMBER = (
    r"port|number|size|amount|limit|count|percentage|timeout|duration|level|length|"
    r"exit code|exit status|code|status|capacity|weight|speed|price|cost|fee|rate|"
    r"temperature|voltage|distance|height|width|depth|age|score"
)
_NOUNS_NAME = (
    r"option|flag|setting|parameter|variable|command|file|program|tool|application|app|"
    r"package|function|key|directive|argument|switch|module|field|target|"
    r"method|library|directory|folder|path|name|extension|plugin|format|protocol|header|"
    r"environment variable|config(?:uration)? (?:key|value)|value"
)
ASKS: dict[str, re.Pattern[str]] = {
    "version": re.compile(
        r"\b(?:what|which|in which|from which|since which)\s+(?:[\w'-]+\s+){0,2}?(?:version|release)s?\b"
        r"|\bversi\s+(?:\w+\s+){0,2}?(?:berapa|apa|mana)\b|\brilis\s+(?:\w+\s+){0,2}?(?:berapa|apa|mana)\b"
    ),
    "date": re.compile(
        r"^\W*(?:since\s+|until\s+)?when\s+(?:was|were|did|does|do|is|are|will|would|should|can|could|has|have|had)\b|\b(?:what|which|in which)\s+(?:year|date|day|month)\b"
        r"|\bkapan\b|\btahun\s+berapa\b|\btanggal\s+berapa\b"
    ),
    "number": re.compile(
        r"\bhow\s+(?:many|much|long|big|large|old|often|far|fast|high|low|small|heavy|wide|tall)\b"
        rf"|\b(?:what|which)\b(?:\s+[\w'-]+){{0,3}}?\s+(?:{_NOUNS_NUMBER})s?\b"
        r"|\bberapa\b"
    ),
    "name": re.compile(
        rf"\b(?:what|which)\s+(?:[\w'-]+\s+){{0,3}}?(?:{_NOUNS_NAME})s?\b"
        r"|\b(?:perintah|berkas|file|paket|opsi|program|parameter|direktori|fungsi|pengaturan|"
        r"aplikasi|alat|tombol)\b(?:\s+\S+){0,6}?\s+(?:apa|mana)\b"
        r"|\bwhere\b|\bdi\s?mana\b|\bke\s?mana\b"
    ),
}
# What a number question counts or measures: "how many lines", "how much memory", "berapa ruang
# disk"; "how long" asks for a duration. A sentence giving the number names it nearby.
QUANTITY = re.compile(
    r"\bhow\s+(?:many|much)\s+(?!(?:does|do|did|is|are|was|were|can|could|will|would|should)\b)"
    r"(?P<a>[\w-]+)(?:\s+(?P<b>[\w-]+))?(?:\s+(?P<c>[\w-]+))?"
    r"|\bberapa\s+(?:banyak\s+)?(?P<d>\w+)(?:\s+(?P<e>\w+))?"
)
# A question about money needs an amount of money.
ASKS_MONEY = re.compile(
    r"\b(?:cost|costs|price|prices|pay|spend|fee|fees|charge|biaya|harga|tarif|bayar)\b"
)
STATES_MONEY = re.compile(
    r"(?:[$\u20ac\u00a3\u00a5]\s?\d|\b(?:USD|EUR|GBP|IDR|JPY|Rp\.?)\s?\d|\d\s?(?:USD|EUR|GBP|IDR)\b"
    r"|\b(?:dollars?|euros?|pounds?|rupiah|cents?)\b|\b(?:free of charge|no charge|gratis|free)\b)",
    re.IGNORECASE,
)
_NUMBER_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"hundred|thousand|million|billion|dozen|half|satu|dua|tiga|empat|lima|enam|tujuh|delapan|"
    r"sembilan|sepuluh|sebelas|puluh|ratus|ribu|juta|setengah"
)
_MONTHS = (
    r"jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec|january|february|march|april|june|"
    r"july|august|september|october|november|december|januari|februari|maret|mei|juni|juli|"
    r"agustus|oktober|desember"
)
_DAYS = (
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|daily|weekly|monthly|yearly|annually|"
    r"senin|selasa|rabu|kamis|jumat|sabtu|minggu|setiap hari|setiap minggu|setiap bulan"
)
# A sentence that states a value of each kind.
STATES: dict[str, re.Pattern[str]] = {
    "number": re.compile(rf"\d|\b(?:{_NUMBER_WORDS})\b", re.IGNORECASE),
    "money": STATES_MONEY,
    "version": re.compile(
        r"\b\d+\.\d+|\bv\d|\b(?:version|versi|release|rilis)\s+\d", re.IGNORECASE
    ),
    "date": re.compile(
        rf"\b(?:1[89]|20)\d\d\b|\b(?:{_MONTHS}|{_DAYS})\b|\b\d{{1,2}}[:.]\d\d\b", re.IGNORECASE
    ),
    # Code-like tokens and proper names: `x`, --opt, -o, a_b, a=b, a/b, f(), camelCase, CAPS,
    # "quoted", a capitalised word inside the sentence.
    "name": re.compile(
        r"`[^`]+`|(?<![\w-])--?[A-Za-z]|\w[_=:/.]\w|\w\(\)|\b[a-z]+[A-Z]\w*|\b[A-Z]{2,}\w*"
        r"|\"[^\"]+\"|\u2018[^\u2019]+\u2019|\u201c[^\u201d]+\u201d|(?<=[a-z,;:] )[A-Z][a-z]+\w*|/\w"
    ),
}
ASKS_DEFAULT = re.compile(
    r"\bdefaults?\b|\bdon'?t (?:change|set)\b|\bnever (?:change|set)\b|\bwithout (?:changing|setting)\b"
    r"|\bout of the box\b|\bbaku\b|\bbawaan\b|\bstandarnya\b",
    re.IGNORECASE,
)
# A default stated in words ("by default", "normally", "unless"), not inside an identifier such
# as PIP_DEFAULT_TIMEOUT or --default-timeout.
STATES_DEFAULT = re.compile(
    r"(?<![\w-])(?:defaults?|default(?:s|ed) to|normally|unless|otherwise|initially|"
    r"baku|bawaan|standarnya|secara otomatis)(?![\w-])",
    re.IGNORECASE,
)
# Key terms: --options, camelCase and CapsInside words (not plain ACRONYMS, often spelt out), a_b, a=b,
# versions (5.2, 3.11.0), words with digits (RV710, amd64), and "quoted" words.
KEY_TERM = re.compile(
    r"(?<![\w-])(?:--?[A-Za-z][\w-]*|[A-Za-z]*[a-z][A-Za-z]*[A-Z]\w*|[A-Z]+[A-Z][a-z]\w*|\w+(?:[_=]\w*)+|\d+(?:\.\d+)+"
    r"|[A-Za-z]+\d+\w*|\d+[A-Za-z]+\w*|[A-Za-z]+-\d+\w*|[^\W\d_]{2,}(?:-[^\W\d_]{2,})+)"
)
FILLERS = frozenset(
    "a an the of is are was were do does did can could should will would may might must has have had "
    "i you we they it my your our their its this that these those yang ini itu saya anda kita".split()
)
DURATION = re.compile(r"\bhow\s+long\b|\bberapa\s+lama\b")
TIME_UNITS = (
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
    "ms",
    "sec",
    "min",
    "detik",
    "menit",
    "jam",
    "hari",
    "minggu",
    "bulan",
    "tahun",
)
QUOTED = re.compile(r"(?:^|(?<=[\s(]))[\"\u201c\u2018`]([^\"\u201d\u2019`]{2,40})[\"\u201d\u2019`]")


@dataclass(frozen=True)
class Focus:
    """What a question asks for."""

    answer_type: str | None  # number, money, version, date, name; None: a definition, a how
    wants_default: bool
    key_terms: tuple[str, ...]
    quantity: tuple[str, ...] = ()  # for a number: the words naming what is counted or measured


def focus(question: str) -> Focus:
    lowered = " ".join(question.lower().split())
    answer_type = next((kind for kind, pattern in ASKS.items() if pattern.search(lowered)), None)
    quantity: tuple[str, ...] = ()
    if answer_type == "number":
        if ASKS_MONEY.search(lowered):
            answer_type = "money"
        elif DURATION.search(lowered):
            quantity = TIME_UNITS
        elif match := QUANTITY.search(lowered):
            groups = [g for g in match.groupdict().values() if g]
            words = [w for g in groups for w in g.split() if w not in FILLERS]
            quantity = tuple(w for w in words if not w.isdigit())
    return Focus(answer_type, bool(ASKS_DEFAULT.search(question)), key_terms(question), quantity)


def mentions(words: tuple[str, ...], tokens: frozenset[str] | set[str]) -> bool:
    """Any of `words` among `tokens`, by a shared start of at least 4 letters ("second" in
    "seconds", "column" in "columns")."""
    stems = {w[:4] if len(w) > 4 else w for w in words}
    return any(t[:4] in stems if len(t) > 4 else t in stems for t in tokens)


def key_terms(question: str) -> tuple[str, ...]:
    terms = [match.group().strip("-=") for match in KEY_TERM.finditer(question)]
    terms += [match.group(1).strip() for match in QUOTED.finditer(question)]
    return tuple(
        t for t in dict.fromkeys(terms) if len(t) >= 2 and not t.isdigit() and not _doubled(t)
    )


def _stem(word: str) -> str:
    """A pattern for a word and its inflections ("carried" also matches "carry")."""
    return re.escape(word[:4]) + r"\w*" if len(word) > 4 else re.escape(word) + r"\w*"


def _doubled(term: str) -> bool:
    """A reduplicated word ("berkas-berkas", Indonesian plural): not a term of its own."""
    parts = term.lower().split("-")
    return len(parts) > 1 and len(set(parts)) == 1


def missing_terms(terms: Sequence[str], vocabulary: set[str], text: str = "") -> list[str]:
    """The key terms no passage mentions. A term is mentioned when its whole token is there,
    when a hyphenated word is written with a space, as one word or inflected ("hard drive",
    "realtime", "carry-over" for "carried-over" in the passages' `text`), or when a word of letters starts a longer token ("RFC" in "rfc8878").
    Versions and codes must match whole."""
    lowered = " ".join(text.lower().split())
    missing = []
    for term in terms:
        tokens = tokenize(term)
        if not tokens:
            continue
        whole = tokens[0]
        if whole in vocabulary:
            continue
        if re.fullmatch(r"[^\W\d_]+(?:-[^\W\d_]+)+", whole):
            spelt = r"[\s-]?".join(_stem(p) for p in whole.split("-"))
            if re.search(rf"(?<!\w){spelt}(?!\w)", lowered):
                continue
        if whole.isalpha() and len(whole) >= 3 and any(w.startswith(whole) for w in vocabulary):
            continue
        missing.append(term)
    return missing


@dataclass
class Sentence:
    text: str
    similarity: float
    coverage: float  # IDF-weighted share of the question's words in the sentence's neighbourhood
    near: frozenset[str] = frozenset()  # the words of the sentence, its neighbours and heading
    source: int = -1  # the index of its passage among the sources
    span: tuple[int, int] = (0, 0)  # where it is in its passage's text

    @property
    def support(self) -> float:
        return self.similarity + COVERAGE_WEIGHT * self.coverage


@dataclass
class Signals:
    """What the evidence says about a question, for the refusal decision and its reason."""

    focus: Focus
    missing: list[str] = field(default_factory=list)
    best: Sentence | None = None  # the best-supporting sentence
    typed: Sentence | None = None  # the best-supporting sentence stating a value of the asked kind
    default_stated: bool = True  # a sentence stating a value of the asked kind states a default
    sentences: list[Sentence] = field(default_factory=list)  # every sentence read, in order

    @property
    def support(self) -> float:
        return self.best.support if self.best else 0.0

    @property
    def typed_support(self) -> float:
        if self.focus.answer_type is None:
            return self.support
        return self.typed.support if self.typed else 0.0


def read_evidence(
    question: str,
    sources: Sequence[SourceRef],
    question_vector: Sequence[float],
    embed: Callable[[list[str]], list[list[float]]],
    weight: Callable[[str], float],
) -> Signals:
    """The signals for `question` over `sources` (best first). `embed` embeds passage sentences
    (one batch), `weight` gives a word's informativeness (the keyword index's IDF)."""
    asked = focus(question)
    words = [w for w in dict.fromkeys(tokenize(question)) if w not in FUNCTION_WORDS]
    weights = {w: weight(w) for w in words}
    total = sum(weights.values()) or 1.0
    vocabulary: set[str] = set()
    passages: list[str] = []
    rows: list[tuple[str, float, frozenset[str], int, tuple[int, int]]] = []
    for number, source in enumerate(sources):
        around = set(tokenize(f"{source.title} {source.heading} {source.file_name}"))
        vocabulary |= around | set(tokenize(source.text))
        passages.append(f"{source.title} {source.heading} {source.text}")
        spans = sentence_spans(source.text)
        pieces = [" ".join(source.text[a:b].split()) for a, b in spans]
        tokens = [set(tokenize(piece)) for piece in pieces]
        for i, piece in enumerate(pieces):
            near = around | tokens[i]
            near |= tokens[i - 1] if i else set()
            near |= tokens[i + 1] if i + 1 < len(tokens) else set()
            share = sum(v for w, v in weights.items() if w in near) / total
            rows.append((piece, share, frozenset(near), number, spans[i]))
    signals = Signals(asked, missing_terms(asked.key_terms, vocabulary, " ".join(passages)))
    rows = rows[:MAX_SENTENCES]
    if not rows:
        return signals
    unique = list(dict.fromkeys(row[0] for row in rows))
    vectors = dict(zip(unique, embed(unique), strict=True))
    sentences = [
        Sentence(text, cosine(question_vector, vectors[text]), coverage, near, number, span)
        for text, coverage, near, number, span in rows
    ]
    signals.sentences = sentences
    signals.best = max(sentences, key=lambda s: s.support)
    if asked.answer_type is not None:
        pattern = STATES[asked.answer_type]
        typed = [s for s in sentences if pattern.search(s.text)]
        if asked.quantity:
            typed = [s for s in typed if mentions(asked.quantity, s.near)]
        signals.typed = max(typed, key=lambda s: s.support, default=None)
        if asked.wants_default and asked.answer_type in ("number", "version"):
            signals.default_stated = any(
                STATES_DEFAULT.search(s.text) for s in typed if s.support >= signals.support - 0.25
            )
    return signals


@dataclass
class Verdict:
    refused: bool
    reason: str | None = None
    # which check refused: topic, key_terms, default, answer_type, support
    signal: str | None = None


VALUE_WORDS = {
    "number": "number",
    "money": "amount of money",
    "version": "version",
    "date": "date",
    "name": "name",
}


def judge(signals: Signals, settings: Settings) -> Verdict:
    """Refuse, with the first failing check's reason, or let the question through."""
    s = settings
    if s.refuse_missing_terms and signals.missing:
        terms = ", ".join(f"'{t}'" for t in signals.missing[:3])
        return Verdict(True, f"no passage mentions {terms}", "key_terms")
    if s.refuse_unstated_default and not signals.default_stated:
        return Verdict(True, "no passage states the default value asked for", "default")
    kind = signals.focus.answer_type
    if kind is not None and signals.typed_support < s.refuse_min_typed_support:
        return Verdict(True, f"no passage states the asked {VALUE_WORDS[kind]}", "answer_type")
    if signals.support < s.refuse_min_support:
        return Verdict(True, "no sentence in the passages matches the question closely", "support")
    return Verdict(False)
