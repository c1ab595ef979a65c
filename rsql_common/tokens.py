"""Token counts of a text, with no tokenizer.

``text_tokens`` is the rough count: about four characters a token. The kernel trims context to
a budget by it, and it is what a prose prompt costs. ``most_tokens`` is the most a text may be
billed as: the proxy reserves a request's prompt by it, so text made of short words or symbols
(``"a a a"``, ``"}{"``, digits) cannot be reserved at a fraction of what a tokenizer makes of
it. On prose and most code the two agree.
"""

from __future__ import annotations

__all__ = ["CHARS_PER_TOKEN", "most_tokens", "text_tokens", "token_chars"]

CHARS_PER_TOKEN = 4  # ASCII characters a token


def text_tokens(text: str) -> int:
    """About four ASCII characters a token; every further UTF-8 byte of other scripts a token.

    Byte-level tokenizers can spend a token per byte on text they have seen little of (emoji,
    rare scripts), so non-ASCII text is counted by its bytes: a reservation must not be cheap
    to undercut.
    """
    if text.isascii():
        return len(text) // CHARS_PER_TOKEN
    return len(text) // CHARS_PER_TOKEN + len(text.encode("utf-8", "surrogatepass")) - len(text)


# Each byte as the shape a tokenizer splits on: " " a space or tab, "n" a line break, "0" a
# digit, "!" a symbol (punctuation; the bytes of other scripts, counted apart), "a" a letter.
# BPE tokenizers (OpenAI's, Anthropic's, Llama's) start a token at most spaces (" word") and
# after a line break, give most symbols and line breaks a token of their own, and split digits
# into groups of at most three: so a text of one-letter words is a token every two characters,
# and one of symbols a token a character, where four characters a token would reserve a
# quarter of it.
_SHAPES = bytes(
    0x20
    if b in (0x20, 0x09)
    else 0x6E
    if b in (0x0A, 0x0D, 0x0B, 0x0C)
    else 0x30
    if 0x30 <= b <= 0x39
    else 0x61
    if 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A
    else 0x21
    for b in range(256)
)
# one shape as itself, every other as ".": where a run of it ends is where "0." (or " .") is
# (a pattern led by its rarer byte is counted the faster)
_DIGIT_RUNS = bytes(0x30 if b == 0x30 else 0x2E for b in range(256))
_SPACE_RUNS = bytes(0x20 if b == 0x20 else 0x2E for b in range(256))


def most_tokens(text: str) -> int:
    """The most tokens `text` may be billed as: the rough count (``text_tokens``), or, where
    it is more, a token for each space (a run of them as two), symbol and line break and a
    word straight after one, and for each run of digits, every three digits in it and a word
    after it: the tokenizers' worst case for short words and symbols. On prose it is some 1.2
    times what a tokenizer counts, on code and JSON some 1.5 times (their symbols, which
    tokenizers join, each counted). Native code only (translates and counts: a few milliseconds a megabyte), as it runs
    on every request. Text with neither spaces nor symbols (random letters) can still be some
    two characters a token: what such a text is billed is settled to the provider's usage."""
    rough = text_tokens(text)
    if len(text) < 2:
        return max(rough, len(text))
    raw = text.encode("utf-8", "surrogatepass")
    shapes = raw.translate(_SHAPES)
    # a space is a token with the word after it; a longer run of spaces one more (the last of
    # them joins the word): a run's end is where " ." is, a longer run's where "  ." is
    ends = shapes.translate(_SPACE_RUNS) + b"."
    spaces = ends.count(b" .") + ends.count(b"  .")
    symbols = shapes.count(b"!") - (len(raw) - len(text))  # other scripts: in `rough` already
    # a line break or a symbol, and a word straight after one (no space joins them); and the
    # first token
    structure = 1 + spaces + symbols + shapes.count(b"!a") + 2 * shapes.count(b"n")
    digits = shapes.count(b"0")
    if digits:  # a run of n digits is ceil(n / 3) tokens: at most n // 3, and one a run;
        # and a word straight after one starts a token of its own
        numbers = shapes.translate(_DIGIT_RUNS).count(b"0.") + (shapes[-1] == 0x30)
        structure += digits // 3 + numbers + shapes.count(b"0a")
    return max(rough, structure + rough - len(text) // CHARS_PER_TOKEN)


def token_chars(tokens: int) -> int:
    """How many ASCII characters ``tokens`` tokens hold by :func:`text_tokens`' count: a
    budget in tokens as the size of the text to fill it."""
    return tokens * CHARS_PER_TOKEN
