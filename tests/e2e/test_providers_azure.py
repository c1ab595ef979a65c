"""Azure OpenAI and Google Gemini upstreams, through the proxy, as a caller sees them.

The Azure side is ``tests/helpers/fake_azure.py``, which follows Microsoft's published reference
(Azure OpenAI data-plane REST reference, api-version 2024-10-21, and the v1 API:
https://learn.microsoft.com/azure/ai-services/openai/reference; quotas and their headers:
https://learn.microsoft.com/azure/ai-services/openai/how-to/quota). Gemini's OpenAI-compatible
endpoint (https://ai.google.dev/gemini-api/docs/openai) is played by a small server below,
for what differs from OpenAI: its error bodies are a one-item list of Google's error object,
and a 429 says its wait in a ``google.rpc.RetryInfo`` detail
(https://ai.google.dev/gemini-api/docs/rate-limits).

Callers use the official ``openai`` SDK against the proxy and only ever name public models.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import openai
import pytest
from aiohttp import web

from tests.helpers import http
from tests.helpers.fake_azure import Deployment, FakeAzure
from tests.helpers.fake_provider import FakeProvider, KeyPolicy
from tests.helpers.loopback import LoopbackServer
from tests.helpers.servers import ProxyService, start_service

pytestmark = pytest.mark.slow

AZURE_KEY = "azure-key-0123456789"
OPENAI_KEY = "test-openai-key-fallback"
GEMINI_KEY = "test-gemini-key-0123456789"
USERS = {"prov-alice": {"name": "alice"}}


class FakeGemini(LoopbackServer):
    """Gemini's OpenAI-compatible endpoint, for its errors: a 429 with RetryInfo, a 400 as a list."""

    thread_name = "fake-gemini"

    def __init__(self) -> None:
        self.status = 429
        self.calls = 0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/openai/chat/completions", self._chat)
        app.router.add_get("/v1beta/openai/models", self._models)

    async def _chat(self, request: web.Request) -> web.Response:
        self.calls += 1
        if request.headers.get("Authorization") != f"Bearer {GEMINI_KEY}":
            return web.json_response(
                [
                    {
                        "error": {
                            "code": 400,
                            "message": "API key not valid.",
                            "status": "INVALID_ARGUMENT",
                        }
                    }
                ],
                status=400,
            )
        if self.status == 429:
            return web.json_response(
                [
                    {
                        "error": {
                            "code": 429,
                            "status": "RESOURCE_EXHAUSTED",
                            "message": "You exceeded your current quota, please check your plan and billing details.",
                            "details": [
                                {
                                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                                    "retryDelay": "37s",
                                }
                            ],
                        }
                    }
                ],
                status=429,
            )
        return web.json_response(
            [
                {
                    "error": {
                        "code": 400,
                        "status": "INVALID_ARGUMENT",
                        "message": 'Invalid JSON payload received. Unknown name "logit_bias": Cannot find field.',
                    }
                }
            ],
            status=400,
        )

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "models/gemini-2.5-flash", "object": "model"}]}
        )


@pytest.fixture(scope="module")
def azure() -> Iterator[FakeAzure]:
    with FakeAzure(
        [
            Deployment("chat-mini", "gpt-4o-mini-2024-07-18", limit=2),
            Deployment("big-one", "gpt-4o-2024-08-06"),
            Deployment("emb", "text-embedding-3-small-1"),
        ],
        key=AZURE_KEY,
    ) as fa:
        yield fa


@pytest.fixture(scope="module")
def backup() -> Iterator[FakeProvider]:
    fp = FakeProvider({OPENAI_KEY: KeyPolicy("openai-1")}, model_ids=["gpt-4o-mini"]).start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    fg = FakeGemini().start()
    yield fg
    fg.stop()


@pytest.fixture(scope="module")
def proxy(
    azure: FakeAzure,
    backup: FakeProvider,
    gemini: FakeGemini,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProxyService]:
    upstreams = [
        # deployments URL form with a dated api-version; the admin's public names
        {
            "name": "azure-se",
            "provider": "azure",
            "base_url": azure.endpoint,
            "api_version": "2024-10-21",
            "api_key": AZURE_KEY,
            "models": {
                "gpt-4o-mini": "chat-mini",
                "gpt-4o": "big-one",
                "text-embedding-3-small": "emb",
            },
        },
        # the v1 API with an Entra ID token, for one more public name
        {
            "name": "azure-v1",
            "provider": "azure",
            "base_url": azure.endpoint,
            "api_version": "v1",
            "auth": "entra",
            "api_key": azure.entra_token,
            "models": {"gpt-4o-v1": "big-one"},
            "prices": {"gpt-4o-v1": {"input": 2.5, "output": 10.0}},
        },
        {
            "name": "openai-1",
            "base_url": backup.base_url,
            "api_key": OPENAI_KEY,
            "models": ["gpt-4o-mini"],
        },
        {
            "name": "gemini-1",
            "provider": "gemini",
            "base_url": f"http://127.0.0.1:{gemini.port}/v1beta/openai",
            "api_key": GEMINI_KEY,
            "models": ["gemini-2.5-flash"],
        },
    ]
    svc = start_service(
        tmp_path_factory.mktemp("providers"),
        {
            "upstreams": upstreams,
            "default_model": "gpt-4o-mini",
            "max_wait_seconds": 1.0,
            "user_daily_budget_usd": 5.0,
            "health_check_seconds": 0.0,
        },
        static_users=USERS,
    )
    yield svc
    svc.stop(9)


def client(proxy: ProxyService) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "v1", api_key="prov-alice", max_retries=0)


def test_an_azure_deployment_answers_under_the_public_name_with_its_own_url_key_and_headers(
    proxy: ProxyService,
    azure: FakeAzure,
) -> None:
    azure.received.clear()
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "how many rows?"}], max_tokens=20
    )
    answer = raw.parse()
    assert answer.choices[0].message.content.startswith("Azure answer to: how many rows?")
    sent = azure.received[-1]
    # the deployment the admin mapped, in the deployments URL form with the api-version, by api-key
    assert (sent.deployment, sent.url_form, sent.auth) == ("big-one", "deployments", "api-key")
    assert sent.query["api-version"] == "2024-10-21"
    assert sent.body["model"] == "big-one"
    h = {k.lower(): v for k, v in raw.headers.items()}
    assert h["x-rsql-upstream"] == "azure-se"
    # Azure's request ids reach the caller under the provider prefix; its quota headers and its
    # model session do not, and our own request id is still ours
    assert h["llm_provider-apim-request-id"] == h["llm_provider-x-request-id"]
    assert h["llm_provider-x-ms-region"] == azure.region
    assert "x-ratelimit-remaining-tokens" not in h and not any("azureml" in k for k in h)
    assert h["x-request-id"] != h["llm_provider-x-request-id"]
    # priced as the public model it stands for (gpt-4o: $2.50 / $10 per million)
    usage = answer.usage
    assert usage is not None
    expected = (usage.prompt_tokens * 2.50 + usage.completion_tokens * 10.00) / 1e6
    assert float(h["x-rsql-cost-usd"]) == pytest.approx(expected, rel=1e-6)


def test_an_azure_stream_and_the_v1_api_with_an_entra_token(
    proxy: ProxyService, azure: FakeAzure
) -> None:
    azure.received.clear()
    stream = client(proxy).chat.completions.create(
        model="gpt-4o-v1",
        messages=[{"role": "user", "content": "stream it"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Azure answer to: stream it"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(
        text.split(" ")
    )
    sent = azure.received[-1]
    assert (sent.deployment, sent.url_form, sent.auth) == ("big-one", "v1", "entra")
    assert "api-version" not in sent.query


def test_the_responses_and_messages_apis_reach_azure_translated_or_as_sent(
    proxy: ProxyService, azure: FakeAzure
) -> None:
    """Azure's deployments URL form serves chat only: a Responses or Messages request is
    translated onto it. Its v1 API serves the Responses API: the request goes there as the user
    sent it (under the deployment's name, stored nowhere), and the answer names the public model."""
    import anthropic

    azure.received.clear()
    oai = client(proxy)
    translated = oai.responses.create(model="gpt-4o", input="how many rows?", max_output_tokens=20)
    assert translated.output_text.startswith("Azure answer to: how many rows?")
    assert translated.model == "gpt-4o"
    sent = azure.received[-1]
    assert (sent.deployment, sent.url_form, sent.endpoint) == (
        "big-one",
        "deployments",
        "chat/completions",
    )
    native = oai.responses.create(model="gpt-4o-v1", input="and columns?", max_output_tokens=20)
    assert native.output_text == "Azure answer to: and columns?"
    assert native.model == "gpt-4o-v1" and native.usage is not None
    sent = azure.received[-1]
    assert (sent.deployment, sent.url_form, sent.endpoint) == ("big-one", "v1", "responses")
    assert sent.body["input"] == "and columns?" and sent.body["store"] is False
    claude = anthropic.Anthropic(
        base_url=proxy.url.rstrip("/"), api_key="prov-alice", max_retries=0
    )
    message = claude.messages.create(
        model="gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Azure answer to: hi"
    assert message.model == "gpt-4o" and message.usage.output_tokens > 0
    sent = azure.received[-1]
    assert (sent.deployment, sent.endpoint) == ("big-one", "chat/completions")


def test_azures_prompt_filter_chunk_becomes_part_of_an_openai_chunk(
    proxy: ProxyService, azure: FakeAzure
) -> None:
    """Azure opens a stream with a chunk of empty id, object and model, no choices and the
    prompt's filter results: every chunk a client gets is OpenAI's, and the results ride on the
    first of them."""
    status, _, raw = proxy.request(
        "POST",
        "v1/chat/completions",
        {
            "model": "gpt-4o-v1",
            "messages": [{"role": "user", "content": "stream it"}],
            "stream": True,
        },
        token="prov-alice",
    )
    assert status == 200, raw
    chunks = [
        json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")
    ]
    assert chunks and all(c["object"] == "chat.completion.chunk" and c["id"] for c in chunks)
    assert all(c["model"] == "gpt-4o-v1" for c in chunks)  # the public name, never the deployment's
    assert chunks[0]["prompt_filter_results"][0]["content_filter_results"]
    assert sum("prompt_filter_results" in c for c in chunks) == 1
    # and the SDK, which holds chunks to OpenAI's schema, reads the stream whole: no chunk of
    # empty id or object, and the filter results readable on the first
    stream = client(proxy).chat.completions.create(
        model="gpt-4o-v1",
        messages=[{"role": "user", "content": "stream it"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    got = list(stream)
    assert all(c.id and c.object == "chat.completion.chunk" for c in got)
    assert got[0].model_extra["prompt_filter_results"][0]["prompt_index"] == 0
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == (
        "Azure answer to: stream it"
    )


def test_neither_the_deployment_nor_its_model_version_reaches_the_caller_in_answers(
    proxy: ProxyService, azure: FakeAzure
) -> None:
    """Azure answers with the model version behind a deployment ("gpt-4o-2024-08-06"); the
    caller reads the public name only, in the JSON answer, in every chunk, in every header."""
    seen = []
    for stream in (False, True):
        raw = client(proxy).chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "which model are you?"}],
            stream=stream,
        )
        seen.append(json.dumps(dict(raw.headers)) + raw.http_response.read().decode())
    raw = client(proxy).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["a"]
    )
    seen.append(json.dumps(dict(raw.headers)) + raw.http_response.read().decode())
    assert azure.received[-1].deployment == "emb"
    for text in seen:
        for internal in ("big-one", "gpt-4o-2024-08-06", 'emb"', "text-embedding-3-small-1"):
            assert internal not in text, (internal, text)
    public = re.compile(r'"model":\s*"gpt-4o"')  # with or without a space: any JSON writer
    assert public.search(seen[0]) and len(public.findall(seen[1])) > 3


def test_an_azure_embeddings_deployment_serves_the_embeddings_endpoint(
    proxy: ProxyService, azure: FakeAzure
) -> None:
    out = client(proxy).embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [d.index for d in out.data] == [0, 1]
    assert azure.received[-1].deployment == "emb"


def test_an_azure_429_falls_over_to_an_openai_key_for_the_same_public_model(
    proxy: ProxyService,
    azure: FakeAzure,
    backup: FakeProvider,
) -> None:
    """chat-mini allows 2 requests a minute. The request that meets Azure's 429 (with
    retry-after-ms) is answered by the OpenAI key, invisibly, and every later one goes there at
    once: the Azure deployment cools down for the wait it named."""
    azure.deployments["chat-mini"].calls.clear()
    azure.received.clear()
    backup.reset()
    after_429: list[str] = []
    for i in range(8):
        before = len(azure.received)
        raw = client(proxy).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"q{i}"}], max_tokens=5
        )
        assert raw.parse().choices[0].message.content
        new = [r.status for r in azure.received[before:]]
        if 429 in new or after_429:
            after_429.append(raw.headers["x-rsql-upstream"])
    statuses = [r.status for r in azure.received if r.deployment == "chat-mini"]
    assert statuses == [200, 200, 429], statuses
    assert after_429 and set(after_429) == {"openai-1"}, after_429


def test_azure_deployment_names_and_keys_never_reach_the_caller(
    proxy: ProxyService, azure: FakeAzure
) -> None:
    status, _, body = http("GET", proxy.url + "v1/models", authorization="Bearer prov-alice")
    assert status == 200
    ids = {m["id"] for m in json.loads(body)["data"]}
    assert {"gpt-4o-mini", "gpt-4o", "gpt-4o-v1"} <= ids
    assert not ids & {"chat-mini", "big-one", "emb"}
    # a deployment's name is no model name here: the proxy's own 404
    with pytest.raises(openai.NotFoundError):
        client(proxy).chat.completions.create(
            model="chat-mini", messages=[{"role": "user", "content": "x"}]
        )
    # Azure's own error quoting the key it was sent and the deployment it was asked for
    azure.errors_next.append(
        (400, "BadRequest", "Deployment {deployment} refused the request made with key {key}.")
    )
    sent = len(azure.received)
    with pytest.raises(openai.BadRequestError) as err:
        client(proxy).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "quote me"}]
        )
    assert [r.deployment for r in azure.received[sent:]] == ["big-one"]  # Azure answered it
    message = err.value.body["message"] if isinstance(err.value.body, dict) else ""
    assert message.startswith("Deployment gpt-4o refused the request"), err.value.body
    assert AZURE_KEY not in str(err.value.body)
    assert "big-one" not in str(err.value.body)


def test_gemini_errors_come_back_in_openai_form_and_its_retry_delay_is_kept(
    proxy: ProxyService,
    gemini: FakeGemini,
) -> None:
    gemini.status = 400
    with pytest.raises(openai.BadRequestError) as bad:
        client(proxy).chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
        )
    error = bad.value.body
    assert isinstance(error, dict)
    assert "Unknown name" in error["message"] and error["code"] == "INVALID_ARGUMENT"
    gemini.status, gemini.calls = 429, 0
    with pytest.raises(openai.RateLimitError) as limited:
        client(proxy).chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "y"}]
        )
    # the wait Gemini named in its RetryInfo, not our 5 s default
    assert 30 <= float(limited.value.response.headers["retry-after"]) <= 37
    # and the key cools down for it: the next request is answered at once, without a call
    with pytest.raises(openai.RateLimitError):
        client(proxy).chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "z"}]
        )
    assert gemini.calls == 1
    assert GEMINI_KEY not in (proxy.log() if hasattr(proxy, "log") else "")
