"""The one rough token count of a text, with no tokenizer: the proxy reserves a request's
tokens by it, and the kernel trims context to a budget by it, so context trimmed to N tokens in
the kernel is about N at the proxy."""

from __future__ import annotations

__all__ = ["text_tokens"]


def text_tokens(text: str) -> int:
    """About four ASCII characters a token; every further UTF-8 byte of other scripts a token.

    Byte-level tokenizers can spend a token per byte on text they have seen little of (emoji,
    rare scripts), so non-ASCII text is counted by its bytes: a reservation must not be cheap
    to undercut.
    """
    if text.isascii():
        return len(text) // 4
    return len(text) // 4 + len(text.encode("utf-8", "surrogatepass")) - len(text)
