"""Words of questions and of catalog names, reduced to comparable forms.

A name is split at case changes, digits and punctuation (``StuID`` -> stu id,
``sleep_total`` -> sleep total), each part lower-cased, abbreviations spelled out (``qty`` ->
quantity) and stemmed. The stemmer is a small suffix stripper written here on purpose: catalog
names are short English-ish words, and a full Porter/Snowball stemmer would be a dependency
that still fails on ``ord``/``cust`` (the abbreviation table does that part).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["acronyms", "name_words", "one_line", "question_literals", "question_words", "stem"]

# camelCase / PascalCase / ALLCAPS runs / digits, within a chunk without punctuation
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

# Abbreviations common in warehouse names, spelled out; both sides go through this table.
ABBREVIATIONS = {
    "qty": "quantity",
    "amt": "amount",
    "num": "number",
    "nbr": "number",
    "no": "number",
    "dept": "department",
    "emp": "employee",
    "empl": "employee",
    "cust": "customer",
    "prod": "product",
    "ord": "order",
    "addr": "address",
    "desc": "description",
    "cnt": "count",
    "avg": "average",
    "pct": "percent",
    "perc": "percent",
    "yr": "year",
    "yrs": "year",
    "dt": "date",
    "org": "organization",
    "acct": "account",
    "txn": "transaction",
    "trx": "transaction",
    "mgr": "manager",
    "loc": "location",
    "pop": "population",
    "temp": "temperature",
    "nm": "name",
    "cat": "category",
    "cntry": "country",
    "stu": "student",
    "inv": "invoice",
    "sal": "salary",
    "pos": "position",
    "tot": "total",
    "bal": "balance",
    "prc": "price",
    "wt": "weight",
    "ht": "height",
    "dob": "birth",
    "msg": "message",
    "pmt": "payment",
    "ref": "reference",
    "cred": "credit",
    "mth": "month",
    "wk": "week",
    "hr": "hour",
    "min": "minute",
    "sec": "second",
    "dur": "duration",
    "st": "state",
    "stat": "status",
    "sched": "schedule",
    "arr": "arrival",
    "dep": "departure",
    "lat": "latitude",
    "lon": "longitude",
    "lng": "longitude",
    "long": "longitude",
    "mpg": "mileage",
    "hp": "horsepower",
    "rev": "revenue",
    "sku": "product",
    "uom": "unit",
    "vol": "volume",
    "ctry": "country",
    "co": "company",
    "corp": "corporation",
}
# "cat" stays an abbreviation of category: a pet called cat is a value (rows), not a name.

# Words that say nothing about which table: question scaffolding and SQL-ish verbs.
STOPWORDS = frozenset(
    """a an and are as at be by can did do does each every for from give had has have how i
    in into is it its list me more most my not of on or our over per show than that the their
    them there these they this those to top under was were what when where which while who
    whose why with within without you your all any also get find many much number count
    total average mean sum max min maximum minimum least highest lowest largest smallest
    between before after during versus vs against across than among only same other others
    one two three first last new old year years time times day days""".split()
)
# "number", "total" etc. are stopwords only in questions: in names they stay (see below).


def stem(w: str) -> str:
    """A light English suffix stripper: plurals, -ing, -ed, -ies/-ied (a few dozen rules)."""
    w = w.lower()
    if len(w) <= 3 or w.isdigit():
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("ie"):  # so that "movie" and "movies" (-> movy) meet
        return w[:-2] + "y"
    if w.endswith("ied") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "shes", "ches", "xes", "zes")):
        return w[:-2]
    if w.endswith("ss") or w.endswith("us") or w.endswith("is"):
        return w
    if w.endswith("ing") and len(w) > 5:
        base = w[:-3]
        if len(base) > 2 and base[-1] == base[-2] and base[-1] not in "lsz":
            base = base[:-1]  # running -> run
        return base
    if w.endswith("ed") and len(w) > 4 and not w.endswith("eed"):
        base = w[:-2]
        if len(base) > 2 and base[-1] == base[-2] and base[-1] not in "lsz":
            base = base[:-1]
        return base
    if w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


@lru_cache(maxsize=65536)
def _norm(part: str) -> str:
    p = part.lower()
    # before and after stemming: "qty" and "qtys", "corp" and "corps" meet
    p = ABBREVIATIONS.get(p) or ABBREVIATIONS.get(stem(p)) or p
    return stem(p)


@lru_cache(maxsize=65536)
def name_words(name: str) -> tuple[str, ...]:
    """The normalized words of a catalog name, in order (``MovieGenre`` -> movie, genre)."""
    out: list[str] = []
    for chunk in re.split(r"[^A-Za-z0-9]+", name):
        for part in _PART.findall(chunk):
            if part.isdigit():
                continue  # "school80", "t250": the digits name no concept
            out.append(_norm(part))
    return tuple(out)


def question_words(text: str) -> list[str]:
    """The question's words in order, normalized, without stopwords (repeats kept once)."""
    seen: dict[str, None] = {}
    for chunk in re.split(r"[^A-Za-z0-9]+", text):
        if not chunk or chunk.isdigit():
            continue
        parts = _PART.findall(chunk)
        # a word typed as one ("StuID") also counts whole: it may be a name as written
        for part in ([chunk] if len(parts) > 1 else []) + parts:
            if part.isdigit() or part.lower() in STOPWORDS:
                continue
            seen.setdefault(_norm(part), None)
    return list(seen)


@lru_cache(maxsize=1024)
def acronyms(text: str) -> frozenset[str]:
    """Initials of 2 to 4 consecutive words ("bone marrow transplant" -> bmt), lower case
    (remembered: ranking a question asks three times)."""
    words = [w for w in re.findall(r"[A-Za-z]+", text) if w.lower() not in STOPWORDS]
    out = set()
    for n in (2, 3, 4):
        for i in range(len(words) - n + 1):
            out.add("".join(w[0] for w in words[i : i + n]).lower())
    return frozenset(out)


# -- literals: what a question names as a value ("Lyon", 'New York', 2012) ---------------------

MAX_LITERALS = 8
MAX_LITERAL_LEN = 40
# a quote opens after a non-word character, so "customers' orders" and "O'Brien" open nothing
_QUOTED = re.compile(
    r"(?<!\w)'([^'\n]{1,80})'(?!\w)|\"([^\"\n]{1,80})\"|\u201c([^\u201d\n]{1,80})\u201d"
    r"|\u2018([^\u2019\n]{1,80})\u2019"
)
_TOKEN = re.compile(r"[^\W_][\w&'.-]*[^\W_]|[^\W_]", re.UNICODE)
_YEAR = re.compile(r"(?<![\w.])(1[89][0-9]{2}|20[0-9]{2})(?![\w.])")
# capitalized words that ask rather than name, when they open a sentence
_COMMANDS = frozenset(
    """show list find give count get return select compute tell display name rank sort order
    calculate please what which who how when where why is are do does did can could""".split()
)
_MAX_PHRASE = 4  # "Rio de Janeiro": capitalized runs joined by at most one small word


def one_line(text: str) -> str:
    """`text` without control or format characters (newlines, bidi overrides), spaces joined."""
    # control and format characters (newlines, bidi overrides) go: a literal is one line of text
    out = "".join(" " if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch for ch in text)
    return " ".join(out.split())


def question_literals(text: str) -> list[str]:
    """Values the question names, in order: quoted strings, capitalized words and phrases
    ("Lyon", "New York"; not a capitalized word that opens a sentence and asks, like "Show"),
    and numbers that look like years. At most ``MAX_LITERALS``, each at most
    ``MAX_LITERAL_LEN`` characters, without control characters: the question is untrusted
    text, these become SQL string literals (made by sqlglot) in a bounded probe."""
    found: dict[str, str] = {}

    def add(s: str) -> None:
        s = one_line(s).strip(" .,;:!?")
        if s and len(s) <= MAX_LITERAL_LEN and s.lower() not in found:
            found[s.lower()] = s

    for m in _QUOTED.finditer(text):
        add(next(g for g in m.groups() if g is not None))
    unquoted = _QUOTED.sub(" . ", text)
    for sentence in re.split(r"[.!?;:\n]+\s|\n", unquoted):
        run: list[str] = []
        tokens = _TOKEN.findall(sentence)
        for k, tok in enumerate(tokens + [""]):
            capital = bool(tok) and tok[0].isupper()
            if capital and k == 0 and (tok.lower() in _COMMANDS or tok.lower() in STOPWORDS):
                capital = False
            if capital and tok.lower() in STOPWORDS and not run:
                capital = False  # "The", "I"
            if capital:
                run.append(tok)
                continue
            small = tok.lower() in ("de", "of", "la", "le", "del", "da", "di", "van", "von")
            if run and small and k + 1 < len(tokens) and tokens[k + 1][:1].isupper():
                run.append(tok)
                continue
            if run:
                add(" ".join(run[:_MAX_PHRASE]))
            run = []
    for m in _YEAR.finditer(text):
        add(m.group(1))
    return list(found.values())[:MAX_LITERALS]


# Words of the names of columns that hold what questions name by value: places, kinds, groups,
# periods ("loans in Texas" -> ``state``, "homes in OldTown" -> ``neighborhood``). Without the
# values (a schema-only policy, a column too varied to read), a wide table keeps these text
# columns when the question names a value nothing else explains.
CATEGORY_WORDS = frozenset(
    """region country countries state city town village county district province neighborhood
    neighbourhood borough location area zone station continent nation territory site
    type kind class category group status gender sex race ethnicity edu education degree
    occupation job role industry sector ownership owner housing tenure brand make model
    manufacturer carline month weekday season party religion language team league""".split()
)
PLACE_WORDS = frozenset(
    """region country countries state city town village county district province neighborhood
    neighbourhood borough location area zone station continent nation territory site""".split()
)
