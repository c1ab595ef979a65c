"""Malformed chat request bodies and wrong fields, each with what its 400 must say and name.

The unit test runs every case through the engine's entry points
(tests/unit/test_request_fields.py); the end-to-end test sends over HTTP the bodies only the
proxy's worker process reads (tests/e2e/test_proxy_hardening.py).
"""

from __future__ import annotations

from typing import Any

HELLO = [{"role": "user", "content": "hello"}]

M = b'"messages": [{"role": "user", "content": "hi"}]'  # a well-formed messages field
# (raw body, a part of the 400's message, the field it names or None)
BAD_BODIES: list[tuple[bytes, str, str | None]] = [
    (b"", "empty", None),
    (b"   ", "empty", None),
    (b"[]", "JSON object", None),
    (b'"text"', "JSON object", None),
    (b"42", "JSON object", None),
    (b"null", "JSON object", None),
    (b"true", "JSON object", None),
    (b"{not json", "not valid JSON", None),
    (b"\xff\xfe\x00garbage", "not valid JSON", None),
    (b'{"messages": [{"role": "user", "content": "\xff\xc0"}]}', "not valid JSON", None),
    (b"{" + M + b', "temperature": NaN}', "NaN", None),
    (b"{" + M + b', "temperature": -Infinity}', "Infinity", None),
    (b"{" + M + b', "temperature": 1e999}', "out of range", None),
    (b"{" + M + b', "top_p": 1E+400}', "out of range", None),
    (b"{" + M + b', "temperature": ' + b"1" * 400 + b".0}", "out of range", None),
    (b"{" + M + b', "seed": ' + b"9" * 5000 + b"}", "too many digits", None),
    (b"{" + M + b', "n": 1, "n": 5000}', "duplicate key 'n'", None),
    (b"{" + M + b', "model": "fake-small", "model": "fake-large"}', "duplicate key 'model'", None),
    (
        b'{"temperature": 0, "messages": [{"role": "user", "content": "\\ud800"}]}',
        "surrogate",
        None,
    ),
    (b'{"messages": [{"role": "user", "content": "ok", "\\udfff": 1}]}', "surrogate", None),
    (
        b"{" + M + b', "metadata": ' + b"[" * 100 + b"]" * 100 + b"}",
        "nested more than 64 levels",
        "metadata",
    ),
]
# bodies too large to be read inline, whose brackets the proxy counts in its worker process:
# sent end to end (unit tests start no process)
WORKER_BODIES: list[tuple[bytes, str, str | None]] = [
    (
        b"{" + M + b', "metadata": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        "nested more than 64 levels",
        None,
    ),
    (b"[" * 200_000 + b"]" * 200_000, "nested", None),
]
# (body, a part of the 400's message, the field it names)
BAD_FIELDS: list[tuple[dict[str, Any], str, str]] = [
    ({"messages": []}, "'messages'", "messages"),
    ({"messages": "hello"}, "'messages'", "messages"),
    ({"messages": {"role": "user"}}, "'messages'", "messages"),
    ({"messages": [1]}, "messages[0] must be an object", "messages[0]"),
    ({"messages": [{}]}, "messages[0].role", "messages[0].role"),
    ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role", "messages[0].role"),
    ({"messages": [{"role": {"a": 1}, "content": "x"}]}, "messages[0].role", "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "messages[0].content"),
    (
        {"messages": [{"role": "user", "content": {"text": "x"}}]},
        "messages[0].content",
        "messages[0].content",
    ),
    (
        {"messages": [{"role": "user", "content": [1]}]},
        "messages[0].content[0]",
        "messages[0].content[0]",
    ),
    (
        {"messages": [{"role": "user", "content": [{"text": "x"}]}]},
        "messages[0].content[0]",
        "messages[0].content[0]",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        "messages[0].content[0].text",
        "messages[0].content[0].text",
    ),
    ({"messages": HELLO * 1001}, "at most 1000", "messages"),
    (
        {"messages": [{"role": "user", "content": "c" * 1_000_001}]},
        "at most 1000000",
        "messages[0].content",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "c" * 600_000}] * 2}]},
        "1200000 characters",
        "messages[0].content",
    ),
    ({"messages": HELLO, "model": 5}, "'model'", "model"),
    ({"messages": HELLO, "model": ["fake-small"]}, "'model'", "model"),
    ({"messages": HELLO, "model": "m" * 300}, "'model'", "model"),
    ({"messages": HELLO, "model": "fake\nsmall"}, "'model'", "model"),
    ({"messages": HELLO, "stream": "yes"}, "'stream'", "stream"),
    ({"messages": HELLO, "stream": 1}, "'stream'", "stream"),
    ({"messages": HELLO, "temperature": "hot"}, "'temperature'", "temperature"),
    ({"messages": HELLO, "temperature": [0]}, "'temperature'", "temperature"),
    ({"messages": HELLO, "temperature": 10**400}, "'temperature'", "temperature"),
    (
        {"messages": HELLO, "frequency_penalty": 9},
        "'frequency_penalty' must be a number from -2 to 2",
        "frequency_penalty",
    ),
    ({"messages": HELLO, "presence_penalty": "high"}, "'presence_penalty'", "presence_penalty"),
    ({"messages": HELLO, "stream_options": "usage"}, "'stream_options'", "stream_options"),
    ({"messages": HELLO, "max_tokens": "5"}, "'max_tokens'", "max_tokens"),
    ({"messages": HELLO, "max_tokens": [5]}, "'max_tokens'", "max_tokens"),
    ({"messages": HELLO, "n": None, "best_of": 0}, "'best_of'", "best_of"),
]
