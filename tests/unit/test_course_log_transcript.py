"""What the course log keeps of a request (engine/courses/transcript.py): the prompt of every
API as role and text, a long conversation's newest messages first, and the answer's text from
every API's JSON and streamed events, each within its bound and saying what was cut."""

from __future__ import annotations

import json

from jupyter_server_ext.engine.courses.transcript import (
    ANSWER_CHARS,
    MESSAGE_CHARS,
    PROMPT_CHARS,
    answer_text,
    begin,
    prompt_of,
    read_answer,
    read_event,
)


def sse(obj: dict, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj)}\n\n".encode()


def test_the_prompt_of_every_api_is_read_as_role_and_text() -> None:
    chat = {
        "messages": [
            {"role": "system", "content": "Give hints, never a whole solution."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "why is my mean NaN?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "describe_frame", "arguments": '{"n":"df"}'}}],
            },
        ]
    }
    assert prompt_of(chat, "chat/completions") == (
        [
            {"role": "system", "text": "Give hints, never a whole solution."},
            {"role": "user", "text": "why is my mean NaN?\n[image_url]"},
            {"role": "assistant", "text": '\n[tool call describe_frame({"n":"df"})]'},
        ],
        0,
    )
    messages = {
        "system": [{"type": "text", "text": "tutor"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}],
    }
    assert prompt_of(messages, "messages")[0] == [
        {"role": "system", "text": "tutor"},
        {"role": "user", "text": "q"},
    ]
    responses = {"instructions": "tutor", "input": [{"role": "user", "content": "q"}]}
    assert prompt_of(responses, "responses")[0][0] == {"role": "system", "text": "tutor"}
    assert prompt_of({"prompt": "def f(", "suffix": "):"}, "completions")[0] == [
        {"role": "prompt", "text": "def f("},
        {"role": "suffix", "text": "):"},
    ]
    assert prompt_of({"input": [1, 2, 3]}, "embeddings")[0] == [
        {"role": "input", "text": "[3 token ids]"}
    ]


def test_a_long_conversation_keeps_its_newest_messages_and_says_what_was_cut() -> None:
    old = [{"role": "user", "content": "x" * MESSAGE_CHARS} for _ in range(10)]
    question = {"role": "user", "content": "the question " + "y" * (2 * MESSAGE_CHARS)}
    kept, cut = prompt_of({"messages": [*old, question]}, "chat/completions")
    assert kept[-1]["text"].startswith("the question ")
    assert kept[-1]["text"].endswith(
        f"[... {len(question['content']) - MESSAGE_CHARS} characters not kept]"
    )
    assert kept[0] == {"role": "cut", "text": "[7 earlier messages not kept]"}
    assert sum(len(m["text"]) for m in kept[1:]) <= PROMPT_CHARS + 200
    total = sum(len(m["content"]) for m in [*old, question])
    assert cut == total - PROMPT_CHARS


def test_the_answer_is_read_from_every_apis_json() -> None:
    cases = [
        (
            "chat/completions",
            {"choices": [{"index": 0, "message": {"content": "a hint"}}]},
            "a hint",
        ),
        ("completions", {"choices": [{"index": 0, "text": "x + 1"}]}, "x + 1"),
        (
            "responses",
            {"output": [{"type": "message", "content": [{"type": "output_text", "text": "r"}]}]},
            "r",
        ),
        (
            "messages",
            {
                "content": [
                    {"type": "text", "text": "m"},
                    {"type": "tool_use", "name": "run_sql", "input": {"sql": "select 1"}},
                ]
            },
            'm\n[tool call run_sql({"sql": "select 1"})]',
        ),
        ("embeddings", {"data": [{}, {}]}, "[2 embeddings]"),
    ]
    for endpoint, answer, text in cases:
        t = begin(("stat101",), {}, endpoint)
        read_answer(t, answer, endpoint)
        assert answer_text(t) == text, endpoint


def test_the_answer_is_read_from_every_apis_stream() -> None:
    chat = [
        sse({"choices": [{"index": 0, "delta": {"content": "Try "}}]}),
        sse({"choices": [{"index": 0, "delta": {"content": "groupby."}}]}),
        sse(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {"index": 0, "function": {"name": "f", "arguments": '{"a"'}}
                            ]
                        },
                    }
                ]
            }
        ),
        sse(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                    }
                ]
            }
        ),
        b"data: [DONE]\n\n",
    ]
    responses = [
        sse({"type": "response.output_text.delta", "delta": "Re"}, "response.output_text.delta"),
        sse({"type": "response.output_text.delta", "delta": "ad"}, "response.output_text.delta"),
        sse(
            {
                "type": "response.output_item.done",
                "output_index": 1,
                "item": {"type": "function_call", "name": "g", "arguments": "{}"},
            },
            "response.output_item.done",
        ),
    ]
    messages = [
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            }
        ),
        sse(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "name": "h"},
            }
        ),
        sse(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{}"},
            }
        ),
    ]
    legacy = [
        sse({"choices": [{"index": 0, "text": "x"}]}),
        sse({"choices": [{"index": 0, "text": "y"}]}),
    ]
    for endpoint, events, text in [
        ("chat/completions", chat, 'Try groupby.\n[tool call f({"a": 1})]'),
        ("responses", responses, "Read\n[tool call g({})]"),
        ("messages", messages, "Hi\n[tool call h({})]"),
        ("completions", legacy, "xy"),
    ]:
        t = begin(("stat101",), {}, endpoint)
        for ev in events:
            read_event(t, ev, endpoint)
        assert answer_text(t) == text, endpoint


def test_an_answer_past_its_bound_is_cut_and_counted() -> None:
    t = begin(("stat101",), {}, "chat/completions")
    piece = "z" * 1000
    for _ in range(ANSWER_CHARS // 1000 + 5):
        read_event(
            t, sse({"choices": [{"index": 0, "delta": {"content": piece}}]}), "chat/completions"
        )
    assert len(answer_text(t)) == ANSWER_CHARS
    assert t.answer_cut == 5000
