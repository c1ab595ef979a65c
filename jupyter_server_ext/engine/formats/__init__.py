"""The wire formats the proxy reads and writes besides OpenAI's chat completions, one home each,
both directions (as sqlglot keeps a dialect): pure functions, no I/O.

``messages/`` is Anthropic's Messages API as clients speak it (a client's request into the chat
form, the chat answer back as a Message or its stream events: ``request``, ``answer``), with the
one map of why an answer ended (``stop_reasons``), which the Anthropic upstream
(``upstreams.anthropic``, a chat request spoken to Anthropic) reads too.
``responses/`` is OpenAI's Responses API, inbound (``request``, ``answer``, ``stream``). Each
reads the usage of its answers sent as they came (``usage``: what a request sent as it was is
settled by). Shared by them: ``chat`` (a chat answer's or chunk's fields read whatever they
hold). What every API's reading shares, the engine's chat path included, is a room below:
``bodies`` (``left_out``, ``hosted_kinds``, ``reading``, ``usage``).
"""
