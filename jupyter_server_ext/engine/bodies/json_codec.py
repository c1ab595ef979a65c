"""JSON on the request path: orjson, with the standard library where orjson says no.

Chosen by measurement (docs/benchmarks.md, *Where a proxied request's CPU goes*): a request's
body goes upstream as JSON and its answer is read for its usage and written again with its
cost, and the usage row is journaled as JSON. The standard library takes 6 µs to write a small
chat body and 640 µs for a 160 KB prompt with accented text (it escapes every non-ASCII
character); orjson 0.3 µs and 6 µs. Reading an answer: 4 µs against 1 µs.

Where orjson refuses what the standard library takes (an integer past 64 bits, NaN in an
answer, nesting past 1,024 levels), the standard library does the work, so nothing is read or
written differently in meaning. A request body is not read here: its strict reading, with
duplicate keys refused, is ``decode``'s.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any) -> bytes:
    """`obj` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError: a 65-bit integer, a key that is not a string
        return json.dumps(obj).encode()


def loads(data: bytes | str) -> Any:
    """`data` parsed; ValueError (or RecursionError) when it is no JSON at all."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
