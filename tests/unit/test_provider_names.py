"""#35 6: what a provider calls things stays with the proxy. A public model name an admin maps to
a provider-side one (a fine-tune's id, an Azure deployment) is the only name callers see, in
every answer, every stream chunk and every error, and a provider's error text names no project,
organization or host of the upstream. Over HTTP in a Jupyter server in this process, in front of
the fake provider."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import InProcessJupyter

INTERNAL = "fake-small"  # the provider's own name, an internal fine-tune in real life
PUBLIC = "course-model"


@pytest.fixture
def mapped(jupyter_app_factory, fresh_provider: FakeProvider) -> InProcessJupyter:
    models = {"models": {PUBLIC: INTERNAL}}
    return jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=models, a2=models, b1=models),
            "default_model": PUBLIC,
        },
        named_users=True,
    )


def post(server: InProcessJupyter, path: str, body: dict[str, Any]) -> tuple[int, str]:
    status, headers, raw = server.request("POST", path, body, token="tok-alice")
    return status, json.dumps(headers) + raw.decode()


def test_answers_and_every_chunk_name_the_public_model_only(
    mapped: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    ask = {"model": PUBLIC, "messages": [{"role": "user", "content": "hello"}]}
    seen = [
        post(mapped, "v1/chat/completions", ask),
        post(mapped, "v1/chat/completions", {**ask, "stream": True}),
        post(
            mapped,
            "v1/chat/completions",
            {**ask, "stream": True, "stream_options": {"include_usage": True}},
        ),
        post(mapped, "v1/completions", {"model": PUBLIC, "prompt": "hello"}),
        post(mapped, "v1/completions", {"model": PUBLIC, "prompt": "hello", "stream": True}),
        post(mapped, "v1/embeddings", {"model": PUBLIC, "input": ["hello"]}),
    ]
    # the provider was asked by its own name, and answered with it ...
    assert {r.body["model"] for r in fresh_provider.received} == {INTERNAL}
    for status, text in seen:
        assert status == 200, text
        # ... and no caller reads it anywhere, headers included
        assert INTERNAL not in text, text
        assert PUBLIC in text
    chunks = [line for line in seen[1][1].splitlines() if line.startswith("data: {")]
    assert len(chunks) > 3
    assert all(json.loads(c[6:])["model"] == PUBLIC for c in chunks)


def test_a_provider_error_names_no_project_organization_or_internal_model(
    mapped: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    # OpenAI's words for a model a project may not use: "Project `proj_...` does not have
    # access to model `<its own name>`"
    fresh_provider.forbidden_models = {INTERNAL}
    status, text = post(
        mapped,
        "v1/chat/completions",
        {"model": PUBLIC, "messages": [{"role": "user", "content": "x"}]},
    )
    assert status == 403, text
    assert "proj_fake" not in text and INTERNAL not in text
    assert "does not have access to model" in text and PUBLIC in text
    # and an organization as Groq and OpenAI name one in a 4xx
    fresh_provider.forbidden_models = set()
    fresh_provider.script(
        {
            "__status__": 400,
            "error": {
                "message": f"Invalid value for model `{INTERNAL}` in organization `org_01jp8byqwpfx9sp1m0dbhb6a1e`",
                "type": "invalid_request_error",
            },
        }
    )
    status, text = post(
        mapped,
        "v1/chat/completions",
        {"model": PUBLIC, "messages": [{"role": "user", "content": "x"}]},
    )
    assert status == 400, text
    assert "org_01jp8" not in text and INTERNAL not in text and "[account]" in text


def test_a_provider_name_inside_a_longer_one_is_told_as_its_own_public_name() -> None:
    """Two deployments whose names share a start: each is told as its own public name, never
    the shorter one's with the rest of the longer left showing."""
    from jupyter_server_ext.engine import parse_upstreams
    from jupyter_server_ext.engine.upstreams.transport.protocol import anonymized

    upstream = {
        "name": "acme",
        "base_url": "https://acme-prod.openai.example.com/v1",
        "api_key": "test-key-acme-0123456789",
        "models": {"course-model": "ft-acme", "course-large": "ft-acme-large"},
    }
    spec = parse_upstreams([upstream], {})[0]
    said = anonymized(
        json.dumps(
            {
                "error": {
                    "message": "The model `ft-acme-large` does not exist or you do not have "
                    "access to it (acme-prod.openai.example.com; ft-acme works)."
                }
            }
        ),
        spec,
    )
    message = json.loads(said)["error"]["message"]
    assert "`course-large`" in message and "course-model works" in message, message
    assert "ft-acme" not in message and "acme-prod" not in message


async def test_azures_filter_results_ride_on_a_legacy_completions_chunk_too() -> None:
    """A legacy completions stream is no chat one: Azure's filter results are kept on its
    first chunk all the same, never held back for a chat chunk that does not come."""
    from jupyter_server_ext.engine.upstreams.kinds import AzureKind

    results = [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False}}}]
    opening = {"id": "", "object": "", "created": 0, "model": "", "choices": []}
    chunk = {"id": "cmpl-1", "object": "text_completion", "model": "gpt-35-turbo-instruct"}
    events = [
        {**opening, "prompt_filter_results": results},
        {**chunk, "choices": [{"index": 0, "text": "Hello", "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "text": "!", "finish_reason": "stop"}]},
    ]

    async def source() -> Any:
        for event in events:
            yield b"data: " + json.dumps(event).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    out = [event async for event in AzureKind().stream(source(), "course-model")]
    chunks = [json.loads(e[6:]) for e in out if e.startswith(b"data: {")]
    assert [c["id"] for c in chunks] == ["cmpl-1", "cmpl-1"]
    assert chunks[0]["prompt_filter_results"] == results
    assert out[-1] == b"data: [DONE]\n\n"
