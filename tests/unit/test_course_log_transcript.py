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


def test_every_answer_of_a_request_that_asks_for_several_is_kept() -> None:
    """Only the first choice was kept: with ``n: 2``, or a batch of two prompts on
    v1/completions ("hi" and the homework question), the student read an answer the course log
    never showed. Each choice is kept now, headed; streamed, the chunks of the choices come
    interleaved and each goes to its own."""
    chat = {
        "choices": [
            {"index": 0, "message": {"content": "A hint: group first."}},
            {"index": 1, "message": {"content": "The whole solution: df.groupby('r').sum()"}},
        ]
    }
    t = begin(("stat101",), {}, "chat/completions")
    read_answer(t, chat, "chat/completions")
    assert answer_text(t) == (
        "[choice 1 of 2]\nA hint: group first.\n\n"
        "[choice 2 of 2]\nThe whole solution: df.groupby('r').sum()"
    )
    batch = {"choices": [{"index": 0, "text": "Hello!"}, {"index": 1, "text": "SELECT * ..."}]}
    t = begin(("stat101",), {"prompt": ["hi", "hw3, question 2"]}, "completions")
    read_answer(t, batch, "completions")
    assert answer_text(t) == "[choice 1 of 2]\nHello!\n\n[choice 2 of 2]\nSELECT * ..."
    assert [m["text"] for m in t.prompt] == ["hi", "hw3, question 2"]
    t = begin(("stat101",), {}, "chat/completions")
    for index, piece in ((0, "Try "), (1, "Use "), (1, "merge."), (0, "a join.")):
        chunk = {"choices": [{"index": index, "delta": {"content": piece}}]}
        read_event(t, sse(chunk), "chat/completions")
    call = {"index": 0, "function": {"name": "run_sql", "arguments": "{}"}}
    read_event(
        t, sse({"choices": [{"index": 1, "delta": {"tool_calls": [call]}}]}), "chat/completions"
    )
    assert answer_text(t) == (
        "[choice 1 of 2]\nTry a join.\n\n[choice 2 of 2]\nUse merge.\n[tool call run_sql({})]"
    )


def test_an_audio_answer_keeps_its_transcript() -> None:
    """A model that answers in audio puts its words in ``message.audio.transcript`` (streamed:
    ``delta.audio.transcript``): the log kept an empty answer."""
    t = begin(("stat101",), {}, "chat/completions")
    audio = {"id": "audio_1", "data": "UklGRg==", "transcript": "Group by region, then sum."}
    read_answer(t, {"choices": [{"index": 0, "message": {"audio": audio}}]}, "chat/completions")
    assert answer_text(t) == "Group by region, then sum."
    t = begin(("stat101",), {}, "chat/completions")
    for piece in ("Group by ", "region."):
        chunk = {"choices": [{"index": 0, "delta": {"audio": {"transcript": piece}}}]}
        read_event(t, sse(chunk), "chat/completions")
    assert answer_text(t) == "Group by region."
