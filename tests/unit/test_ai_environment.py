"""What points users' AI tools at the proxy: every base URL the common clients read and a token of
the user's, set only for a family of clients the user set nothing of, and on a hub for every
spawned server (the key there, a token scoped to the service: tests/e2e/test_hub_tokens.py)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from jupyter_server_ext.ai_environment import ai_environment
from jupyter_server_ext.hub import configure_jupyterhub


def test_every_base_url_the_common_clients_read_points_at_the_proxy_with_the_users_token() -> None:
    openai_base, anthropic_root = "http://127.0.0.1:8888/rsql/v1", "http://127.0.0.1:8888/rsql"
    assert ai_environment("http://127.0.0.1:8888/rsql/", "tok-123", {}) == {
        # the openai SDK 1.x and Codex; openai 0.x, LangChain, LlamaIndex, LiteLLM
        "OPENAI_BASE_URL": openai_base,
        "OPENAI_API_BASE": openai_base,
        "OPENAI_API_KEY": "tok-123",
        # the Anthropic SDKs and Claude Code; LangChain's ChatAnthropic; older LiteLLM
        "ANTHROPIC_BASE_URL": anthropic_root,
        "ANTHROPIC_API_URL": anthropic_root,
        "ANTHROPIC_API_BASE": anthropic_root,
        "ANTHROPIC_API_KEY": "tok-123",
        # the Agents SDK would export traces to OpenAI with the token as its key
        "OPENAI_AGENTS_DISABLE_TRACING": "1",
    }


def test_the_agents_sdks_trace_export_is_off_only_where_the_token_is_ours() -> None:
    # the user's own OpenAI key: their tracing is theirs to keep
    found = ai_environment("http://h/rsql/", "tok", {"OPENAI_API_KEY": "sk-users-own-key"})
    assert "OPENAI_AGENTS_DISABLE_TRACING" not in found
    # a user who chose tracing explicitly keeps their choice
    found = ai_environment("http://h/rsql/", "tok", {"OPENAI_AGENTS_DISABLE_TRACING": "0"})
    assert "OPENAI_AGENTS_DISABLE_TRACING" not in found and found["OPENAI_API_KEY"] == "tok"


def test_a_family_the_user_set_any_variable_of_is_theirs() -> None:
    # a key of the user's own must never be sent to the proxy, nor the proxy's token elsewhere
    anthropic = {
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_URL",
        "ANTHROPIC_API_BASE",
        "ANTHROPIC_API_KEY",
    }
    openai = {
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "OPENAI_API_KEY",
        "OPENAI_AGENTS_DISABLE_TRACING",
    }
    for theirs in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        assert set(ai_environment("http://h/rsql/", "tok", {theirs: "x"})) == anthropic, theirs
    # Claude Code's bearer token is theirs as much as the key
    for theirs in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_URL"):
        assert set(ai_environment("http://h/rsql/", "tok", {theirs: "x"})) == openai, theirs
    assert ai_environment("http://h/rsql/", "", {}) == {}  # no token: nothing to point with


def test_a_hub_gives_every_server_the_variables_with_a_key_made_at_its_start(tmp_path) -> None:
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text("")
    c = Config()
    configure_jupyterhub(c, config_file=str(cfg), url="http://127.0.0.1:10101", ai_tools=True)
    env = c.Spawner.environment
    assert env["OPENAI_BASE_URL"] == env["OPENAI_API_BASE"]
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:10101/services/rsql/v1"
    assert env["ANTHROPIC_BASE_URL"] == env["ANTHROPIC_API_URL"]
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:10101/services/rsql"
    # JupyterHub calls these with each spawner as it starts (the token's scope and life:
    # tests/e2e/test_hub_tokens.py), and the server's stop revokes it
    assert callable(env["OPENAI_API_KEY"]) and env["ANTHROPIC_API_KEY"] is env["OPENAI_API_KEY"]
    assert callable(c.Spawner.post_stop_hook)
    assert env["OPENAI_AGENTS_DISABLE_TRACING"] == "1"
    # a family the admin set in the spawner's environment stays the admin's
    c3 = Config()
    c3.Spawner.environment = {"OPENAI_BASE_URL": "https://llm.campus.example/v1"}
    configure_jupyterhub(c3, config_file=str(cfg), url="http://127.0.0.1:10101", ai_tools=True)
    env3 = c3.Spawner.environment
    assert env3["OPENAI_BASE_URL"] == "https://llm.campus.example/v1"
    assert "OPENAI_API_KEY" not in env3 and "OPENAI_API_BASE" not in env3
    assert callable(env3["ANTHROPIC_API_KEY"])
    # off unless asked for
    c2 = Config()
    configure_jupyterhub(c2, config_file=str(cfg), url="http://127.0.0.1:10101")
    assert "OPENAI_API_KEY" not in c2.Spawner.environment
    assert "post_stop_hook" not in c2.Spawner


def test_the_admins_own_post_stop_hook_still_runs(tmp_path) -> None:
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text("")
    c = Config()
    ran: list[str] = []
    c.Spawner.post_stop_hook = lambda spawner: ran.append(spawner.name) or "theirs"
    configure_jupyterhub(c, config_file=str(cfg), ai_tools=True)
    # a spawner whose key could not be revoked (no hub here): the admin's hook runs all the same
    broken = SimpleNamespace(name="s1", will_resume=False, user=None, log=logging.getLogger())
    assert c.Spawner.post_stop_hook(broken) == "theirs" and ran == ["s1"]


def test_a_key_that_lives_less_than_a_minute_is_refused(tmp_path) -> None:
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text("")
    with pytest.raises(ValueError, match="ai_key_expires_in"):
        configure_jupyterhub(Config(), config_file=str(cfg), ai_tools=True, ai_key_expires_in=5)
