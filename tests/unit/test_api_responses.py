"""OpenAI's Responses API through the proxy, with the real `openai` SDK and the OpenAI Agents
SDK as clients, over HTTP in a Jupyter server in this process, in front of the fake provider
(which speaks chat completions only: every request is translated both ways).

Each request is held to the same admission, entitlements, budgets and usage log as a chat
completion, and its stored responses belong to the user who made them.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from tests.helpers import require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import InProcessJupyter

PRICED = {
    "prices": {
        "fake-small": {"input": 1.0, "output": 1.0},
        "fake-large": {"input": 1.0, "output": 1.0},
    }
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def tool_call(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    """A chat completion whose answer is one tool call (what the fake provider is scripted with)."""
    return {
        "id": "chatcmpl-tool",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake-small",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
    }


@pytest.fixture
def server(jupyter_app_factory, fresh_provider: FakeProvider) -> InProcessJupyter:
    return jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "admin_users": ["carol"],
            "limit_overrides": {
                "group:students": {"models": ["fake-small"], "user_daily_budget_usd": 1.0}
            },
        },
        named_users=True,
    )


def client(server: InProcessJupyter, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.proxy_url + "v1", api_key=token, max_retries=0)


def activity(server: InProcessJupyter, user: str, rows: int = 1) -> list[dict[str, Any]]:
    """`user`'s usage rows, newest first, once `rows` of them are in the log (written in the
    background, a moment after each answer)."""
    deadline = time.monotonic() + 10
    while True:
        status, _, raw = server.request("GET", f"admin/users/{user}/activity", token="tok-carol")
        assert status == 200, raw
        found = json.loads(raw)["activity"]
        if len(found) >= rows or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_text_answer_is_a_response_billed_to_its_user_under_its_api(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    response = client(server, "tok-alice").responses.create(
        model="fake-small", instructions="Answer briefly.", input="What is a median?"
    )
    assert response.status == "completed"
    assert response.output_text == "Fake answer to: What is a median?"
    assert response.usage is not None and response.usage.output_tokens > 0
    sent = fresh_provider.received[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is a median?"},
    ]
    row = activity(server, "alice")[0]
    assert row["api"] == "responses" and row["status"] == 200 and row["cost_usd"] > 0


def test_a_function_tool_round_trip(server: InProcessJupyter, fresh_provider: FakeProvider) -> None:
    oai = client(server, "tok-alice")
    fresh_provider.script(tool_call("get_weather", '{"city": "Lyon"}'))
    first = oai.responses.create(model="fake-small", input="Weather in Lyon?", tools=[WEATHER])
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Lyon"}
    assert fresh_provider.received[-1].body["tools"] == [
        {
            "type": "function",
            "function": {k: v for k, v in WEATHER.items() if k != "type"},
        }
    ]
    fresh_provider.script("It is sunny in Lyon.")
    second = oai.responses.create(
        model="fake-small",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24 C"}],
        tools=[WEATHER],
    )
    assert second.output_text == "It is sunny in Lyon."
    # the provider got the whole conversation: the question, the call and its result
    messages = fresh_provider.received[-1].body["messages"]
    assert messages[0] == {"role": "user", "content": "Weather in Lyon?"}
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 24 C"}


def test_a_stream_arrives_as_typed_events_in_order_with_usage(server: InProcessJupyter) -> None:
    with client(server, "tok-alice").responses.stream(
        model="fake-small", input="Stream, please"
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert "response.output_text.delta" in kinds
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "Fake answer to: Stream, please"
    assert final.usage is not None and final.usage.input_tokens > 0


def test_long_instructions_echoed_in_a_stream_are_written_as_text_not_escapes(
    server: InProcessJupyter,
) -> None:
    """A stream's created, in-progress and completed events each repeat the response, whose
    `instructions` echo the request's (as OpenAI's do). A million accented characters were
    written as 6-byte escapes each time: 18 MB out and 0.2 s of the event loop for one
    request (issue 53); as text, each event carries them once in UTF-8."""
    instructions = "é" * 80_000  # 160 kB of UTF-8, within the model's context
    body = {"model": "fake-small", "input": "hi", "instructions": instructions, "stream": True}
    status, _, raw = server.request("POST", "v1/responses", body, token="tok-alice")
    assert status == 200, raw[:500]
    events = [json.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]
    echoed = [e for e in events if e.get("response", {}).get("instructions") == instructions]
    assert [e["type"] for e in echoed] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert len(raw) < 3 * len(instructions.encode()) + 100_000  # was 9 times


def test_a_json_schema_format_reaches_the_provider(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fresh_provider.script('{"n": 3}')
    response = client(server, "tok-alice").responses.create(
        model="fake-small",
        input="How many?",
        text={"format": {"type": "json_schema", "name": "count", "schema": schema, "strict": True}},
    )
    assert json.loads(response.output_text) == {"n": 3}
    assert fresh_provider.received[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "count", "schema": schema, "strict": True},
    }


# -- what a hostile user may try --------------------------------------------------------------


def test_another_users_response_id_is_a_404_everywhere(server: InProcessJupyter) -> None:
    mine = client(server, "tok-alice").responses.create(model="fake-small", input="secret plan")
    bob = client(server, "tok-bob")
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="fake-small", previous_response_id=mine.id, input="go on")
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(mine.id)
    # its owner reads and deletes it
    alice = client(server, "tok-alice")
    assert alice.responses.retrieve(mine.id).output_text == "Fake answer to: secret plan"
    alice.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(mine.id)


def test_a_stored_conversation_cannot_carry_a_user_past_their_entitlement_or_budget(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    carol = client(server, "tok-carol")  # staff: every model
    first = carol.responses.create(model="fake-large", input="hello")
    # bob (a student) may not use fake-large, and cannot continue anyone's conversation with it
    bob = client(server, "tok-bob")
    mine = bob.responses.create(model="fake-small", input="hello")
    with pytest.raises(openai.PermissionDeniedError) as err:
        bob.responses.create(model="fake-large", previous_response_id=mine.id, input="more")
    assert "fake-large" in str(err.value)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="fake-small", previous_response_id=first.id, input="more")
    # a long stored conversation is reserved in full on the next turn: past the budget, refused
    big = "x" * 80_000  # 20,000 tokens at $1 a million: $0.02, then $0.04, $0.06 ... a turn
    turn = bob.responses.create(model="fake-small", input=big, max_output_tokens=5)
    n = len(fresh_provider.received)
    for _ in range(14):
        try:
            turn = bob.responses.create(
                model="fake-small", previous_response_id=turn.id, input=big, max_output_tokens=5
            )
        except (openai.BadRequestError, openai.RateLimitError) as exc:
            assert "budget" in str(exc)
            break
    else:
        pytest.fail("the conversation grew past a $1 budget without a refusal")
    assert len(fresh_provider.received) - n < 12
    # refused before it cost more than the day's budget: the turn that would have passed it
    # was refused at its reservation (the whole stored conversation), not found out afterwards
    status, _, raw = server.request("GET", "me", token="tok-bob")
    assert status == 200 and json.loads(raw)["budget"]["spent_usd"] <= 1.0, raw


def test_hosted_tools_no_one_offers_are_dropped_and_named_and_background_is_refused(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    """A built-in tool the provider would run is governed (c.RSQLProxy.hosted_tools): where
    none is offered it is left out and named in x-rsql-dropped, and the request answered (a 400
    before, which stopped Codex with its default web search); state at the provider is refused."""
    oai = client(server, "tok-alice")
    shell = {"type": "function", "name": "shell", "parameters": {"type": "object"}}
    for tool, kind in (
        ({"type": "web_search"}, "web_search"),
        ({"type": "code_interpreter", "container": {"type": "auto"}}, "code_interpreter"),
    ):
        raw = oai.responses.with_raw_response.create(
            model="fake-small", input="hi", tools=[shell, tool]
        )
        assert kind in raw.headers["x-rsql-dropped"].split(",")
        assert raw.parse().output_text.startswith("Fake")
        sent = fresh_provider.received[-1].body["tools"]
        assert [t["function"]["name"] for t in sent] == ["shell"]
        # a request whose only tool it is would be answered as if it had run: refused, saying so
        before = len(fresh_provider.received)
        with pytest.raises(openai.BadRequestError) as err:
            oai.responses.create(model="fake-small", input="hi", tools=[tool])
        assert kind in str(err.value) and "pass for theirs" in str(err.value)
        assert len(fresh_provider.received) == before
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(model="fake-small", input="hi", background=True)
    assert "background" in str(err.value)


def test_a_huge_input_list_is_refused_at_the_message_cap(server: InProcessJupyter) -> None:
    items = [{"role": "user", "content": "x"}] * 1500
    with pytest.raises(openai.BadRequestError) as err:
        client(server, "tok-alice").responses.create(model="fake-small", input=items)
    assert "1500 messages" in str(err.value)


def test_a_stream_that_breaks_off_fails_the_response_and_is_charged(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    for alias in ("a1", "a2", "b1"):
        fresh_provider.set_fault(alias, "die_mid_stream", count=1)
    with client(server, "tok-alice").responses.stream(
        model="fake-small", input="one two three four five six seven eight"
    ) as stream:
        kinds = [event.type for event in stream]
    assert kinds[-1] == "response.failed" and "response.completed" not in kinds
    row = activity(server, "alice")[0]
    assert row["api"] == "responses" and row["status"] == 502
    # charged the prompt and what was generated before it broke (a token a chunk that came,
    # the first chunk, which holds the role, too), never less than the provider billed
    sent = fresh_provider.received[0]
    generated = sent.billed_tokens - sent.prompt_tokens
    assert 0 < generated <= row["completion_tokens"] <= generated + 2, (row, generated)
    assert row["prompt_tokens"] >= sent.prompt_tokens


def test_the_agents_sdk_runs_an_agent_with_a_function_tool(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    require("agents", reason="the test extra installs openai-agents")
    import agents

    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    model = agents.OpenAIResponsesModel(
        model="fake-small",
        openai_client=openai.AsyncOpenAI(base_url=server.proxy_url + "v1", api_key="tok-alice"),
    )
    agent = agents.Agent(
        name="forecaster", instructions="Use the tool.", tools=[get_weather], model=model
    )
    fresh_provider.script(tool_call("get_weather", '{"city": "Lyon"}'), "It is sunny in Lyon.")
    run = agents.Runner.run(
        agent, "Weather in Lyon?", run_config=agents.RunConfig(tracing_disabled=True)
    )
    with ThreadPoolExecutor(1) as pool:  # the SDK runs its own event loop, as a script's would
        result = pool.submit(asyncio.run, run).result(timeout=60)
    assert calls == ["Lyon"]
    assert result.final_output == "It is sunny in Lyon."
    assert [r["api"] for r in activity(server, "alice", 2)[:2]] == ["responses", "responses"]


# -- an upstream that speaks the Responses API itself -----------------------------------------


def speaking_server(jupyter_app_factory: Any, fresh_provider: FakeProvider) -> InProcessJupyter:
    """A Jupyter server whose three upstreams speak the Responses API themselves."""
    speaks = {**PRICED, "responses_api": True}
    return jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=speaks, a2=speaks, b1=speaks),
            "default_model": "fake-small",
            "admin_users": ["carol"],
        },
        named_users=True,
    )


def test_a_stream_sent_as_it_was_that_breaks_off_ends_with_the_apis_error_event(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    """A Responses stream to an upstream that speaks the API, sent as it was, whose connection
    drops mid-answer: the stream the client reads ends with the API's own `error` event (not a
    chat completion's error chunk), and the request is logged a 502 under its API."""
    server = speaking_server(jupyter_app_factory, fresh_provider)
    for alias in ("a1", "a2", "b1"):
        fresh_provider.set_fault(alias, "die_mid_stream", count=1)
    events = list(
        client(server, "tok-alice").responses.create(
            model="fake-small", input="one two three four five six seven eight", stream=True
        )
    )
    assert fresh_provider.received[-1].path == "responses"  # it went upstream as it was sent
    assert "response.output_text.delta" in [e.type for e in events]
    last = events[-1]
    assert last.type == "error" and "response.completed" not in [e.type for e in events]
    assert last.code == "upstream_error" and "the upstream stream broke off" in last.message
    row = activity(server, "alice")[0]
    assert row["api"] == "responses" and row["status"] == 502


def test_an_upstream_that_speaks_the_api_gets_the_request_as_sent_and_stores_nothing(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    server = speaking_server(jupyter_app_factory, fresh_provider)
    oai = client(server, "tok-alice")
    reasoning = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "encrypted_content": "gAAA-opaque",
    }
    first = oai.responses.create(
        model="fake-small",
        instructions="Be brief.",
        input=[reasoning, {"role": "user", "content": "What is a median?"}],
        include=["reasoning.encrypted_content"],
    )
    sent = fresh_provider.received[-1]
    assert sent.path == "responses"
    assert sent.body["input"][0] == reasoning  # items a chat completion could not carry
    assert sent.body["include"] == ["reasoning.encrypted_content"]
    assert sent.body["store"] is False  # the proxy keeps what is stored; the provider nothing
    assert first.output_text == "Fake response to: What is a median?"
    # a continuation: the proxy sends the whole conversation, never a previous_response_id
    fresh_provider.script(
        {"function_call": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}
    )
    second = oai.responses.create(
        model="fake-small", previous_response_id=first.id, input="Weather in Lyon?", tools=[WEATHER]
    )
    sent = fresh_provider.received[-1]
    assert "previous_response_id" not in sent.body
    assert [i.get("type", "message") for i in sent.body["input"]] == [
        "reasoning",
        "message",
        "message",
        "message",
    ]
    call = second.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    with oai.responses.stream(
        model="fake-small",
        previous_response_id=second.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.output_text.startswith("Fake response to:")
    assert oai.responses.retrieve(final.id).id == final.id  # stored, as its owner's
    with pytest.raises(openai.NotFoundError):
        client(server, "tok-bob").responses.retrieve(final.id)
    rows = activity(server, "alice", 3)
    assert [r["api"] for r in rows[:3]] == ["responses"] * 3
    assert all(r["cost_usd"] > 0 for r in rows[:3])


def test_langchain_with_the_responses_api_is_answered(server: InProcessJupyter) -> None:
    require("langchain_openai", reason="the test extra installs langchain-openai")
    import langchain_openai

    llm = langchain_openai.ChatOpenAI(
        model="fake-small",
        base_url=server.proxy_url + "v1",
        api_key="tok-alice",
        use_responses_api=True,
        max_retries=0,
    )
    answer = llm.invoke("What is a median?")
    # a property since langchain-core 1.0 (calling it is deprecated), a method before
    text = answer.text if isinstance(answer.text, str) else answer.text()
    assert "Fake answer to: What is a median?" in text
    assert activity(server, "alice")[0]["api"] == "responses"


# -- the same promises on this API, as a user meets them --------------------------------------

DEAR = {"prices": {"fake-small": {"input": 10.0, "output": 10.0}}}  # $0.00001 a token


@pytest.fixture
def budgeted(jupyter_app_factory, fresh_provider: FakeProvider) -> InProcessJupyter:
    """Every user has $0.002 a day: 200 tokens at these prices."""
    return jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=DEAR, a2=DEAR, b1=DEAR),
            "default_model": "fake-small",
            "admin_users": ["carol"],
            "user_daily_budget_usd": 0.002,
        },
        named_users=True,
    )


def test_a_user_whose_budget_is_spent_gets_a_429_naming_the_budget(
    budgeted: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    oai = client(budgeted, "tok-alice")
    spend = {
        "id": "chatcmpl-spend",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake-small",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A long answer."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 150, "completion_tokens": 150, "total_tokens": 300},
    }
    fresh_provider.script(spend)  # 300 tokens: $0.003, past the day's $0.002
    oai.responses.create(model="fake-small", input="hi", max_output_tokens=16)
    asked = len(fresh_provider.received)
    with pytest.raises(openai.RateLimitError) as spent:
        oai.responses.create(model="fake-small", input="hi again", max_output_tokens=16)
    assert spent.value.status_code == 429
    assert "budget" in spent.value.message and "$0.002" in spent.value.message
    assert int(spent.value.response.headers["retry-after"]) >= 1
    assert len(fresh_provider.received) == asked  # refused before any provider was asked


def test_a_huge_input_list_under_the_cap_is_reserved_per_item_and_refused_by_a_tiny_budget(
    budgeted: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    # under the 1000-message cap, and next to no text: what each item costs is what reserves
    items = [{"role": "user", "content": ""}] * 999
    with pytest.raises((openai.BadRequestError, openai.RateLimitError)) as err:
        client(budgeted, "tok-alice").responses.create(
            model="fake-small", input=items, max_output_tokens=16
        )
    assert "budget" in str(err.value)
    assert fresh_provider.received == []
    # one item fits the same budget: the budget refused the list, not the API
    answer = client(budgeted, "tok-alice").responses.create(
        model="fake-small", input=items[:1], max_output_tokens=16
    )
    assert answer.status == "completed" and len(fresh_provider.received) == 1


def test_a_stored_conversation_is_refused_once_a_window_takes_its_model_away(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    carol = client(server, "tok-carol")  # staff: every model, until the window
    first = carol.responses.create(model="fake-large", input="hello")
    window = {
        "name": "exam",
        "groups": ["staff"],
        "minutes": 30,
        "mode": "custom",
        "models": ["fake-small"],
        "message": "Exam: the small model only",
    }
    status, _, raw = server.request("POST", "admin/windows", window, token="tok-carol")
    assert status == 200, raw
    asked = len(fresh_provider.received)
    with pytest.raises(openai.PermissionDeniedError) as err:
        carol.responses.create(model="fake-large", previous_response_id=first.id, input="go on")
    assert err.value.status_code == 403
    assert "fake-large" in err.value.message or "Exam" in err.value.message
    assert len(fresh_provider.received) == asked
    # the model the window leaves is answered, the stored conversation and all
    again = carol.responses.create(model="fake-small", previous_response_id=first.id, input="go on")
    assert again.status == "completed"
    assert fresh_provider.received[-1].body["messages"][0] == {"role": "user", "content": "hello"}


def test_a_streamed_function_call_round_trip(
    server: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    oai = client(server, "tok-alice")
    fresh_provider.script(tool_call("get_weather", '{"city": "Lyon"}', "call_9"))
    with oai.responses.stream(
        model="fake-small", input="Weather in Lyon?", tools=[WEATHER]
    ) as stream:
        events = list(stream)
        first = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) >= 2  # the arguments as they came, piece by piece
    assert "".join(d.delta for d in deltas) == '{"city": "Lyon"}'
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert kinds.index("response.function_call_arguments.delta") < kinds.index(
        "response.function_call_arguments.done"
    )
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == '{"city": "Lyon"}'
    call = next(item for item in first.output if item.type == "function_call")
    assert (call.name, call.call_id, call.arguments) == (
        "get_weather",
        "call_9",
        '{"city": "Lyon"}',
    )
    fresh_provider.script("Sunny in Lyon.")
    with oai.responses.stream(
        model="fake-small",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text == "Sunny in Lyon."
    messages = fresh_provider.received[-1].body["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "call_9"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}


def test_an_upstream_that_speaks_the_api_is_told_the_proxys_user_never_the_callers(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    speaks = {**PRICED, "responses_api": True}
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=speaks, a2=speaks, b1=speaks),
            "default_model": "fake-small",
        },
        named_users=True,
    )
    victim = {"user": "victim-user", "safety_identifier": "victim-safety"}
    for token in ("tok-alice", "tok-bob"):
        client(server, token).responses.create(
            model="fake-small",
            input="hi",
            metadata={"user_id": "victim-meta", "course": "stats101"},
            **victim,  # type: ignore[arg-type]
        )
    alice, bob = (r.body for r in fresh_provider.received[-2:])
    for sent in (alice, bob):
        assert fresh_provider.received[-1].path == "responses"
        assert "victim" not in json.dumps(sent), sent
        assert sent["user"] == sent["safety_identifier"] and sent["user"]
        assert sent["metadata"] == {"course": "stats101"}  # what names nobody goes on as sent
    assert alice["user"] != bob["user"]  # each caller is told apart, as the proxy knows them


def test_reasoning_an_upstream_stored_nowhere_is_not_sent_back_by_id(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    """The proxy sends every request with `store: false`, so the provider keeps no item: a
    reasoning item with only its id (as a reasoning model's stored answer holds it) would be
    refused by OpenAI ("Item with id 'rs_...' not found"). It is left out; one carrying its
    encrypted content goes on as sent."""
    speaks = {**PRICED, "responses_api": True}
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=speaks, a2=speaks, b1=speaks),
            "default_model": "fake-small",
        },
        named_users=True,
    )
    bare = {"type": "reasoning", "id": "rs_bare", "summary": []}
    sealed = {"type": "reasoning", "id": "rs_sealed", "summary": [], "encrypted_content": "gAAA"}
    answer = client(server, "tok-alice").responses.create(
        model="fake-small", input=[bare, sealed, {"role": "user", "content": "What is a mode?"}]
    )
    assert answer.output_text == "Fake response to: What is a mode?"
    sent = fresh_provider.received[-1]
    assert sent.path == "responses"
    assert [i.get("id") for i in sent.body["input"] if i.get("type") == "reasoning"] == [
        "rs_sealed"
    ]
