"""The one rough token count of a text, with no tokenizer: the proxy reserves a request's
tokens by it, and the kernel trims context to a budget by it, so context trimmed to N tokens in
the kernel is about N at the proxy."""

from __future__ import annotations

__all__ = ["CHARS_PER_TOKEN", "text_tokens", "token_chars"]

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


def token_chars(tokens: int) -> int:
    """How many ASCII characters ``tokens`` tokens hold by :func:`text_tokens`' count: a
    budget in tokens as the size of the text to fill it."""
    return tokens * CHARS_PER_TOKEN
