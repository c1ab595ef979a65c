"""What points users' AI tools at the proxy: every base URL the common clients read and a token of
the user's, set only for a family of clients the user set nothing of, and on a hub for every
spawned server (the key there, a token scoped to the service: tests/e2e/test_hub_tokens.py)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from jupyter_server_ext.ai_environment import ai_environment, served_windows
from jupyter_server_ext.engine.errors import ConfigError
from jupyter_server_ext.engine.upstreams.specs import parse_upstreams
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
        # Claude Code's sessions start with one cacheable prefix (tests/e2e/test_agent_sessions_cached.py)
        "CLAUDE_CODE_ATTRIBUTION_HEADER": "0",
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


def test_claude_codes_attribution_line_is_off_unless_the_user_chose() -> None:
    assert ai_environment("http://h/", "tok", {})["CLAUDE_CODE_ATTRIBUTION_HEADER"] == "0"
    mine = {"CLAUDE_CODE_ATTRIBUTION_HEADER": "1"}
    assert "CLAUDE_CODE_ATTRIBUTION_HEADER" not in ai_environment("http://h/", "tok", mine)
    # Claude Code pointed at the user's own endpoint: none of its variables are ours to set
    theirs = ai_environment("http://h/", "tok", {"ANTHROPIC_API_KEY": "sk-ant-theirs"})
    assert "CLAUDE_CODE_ATTRIBUTION_HEADER" not in theirs


def test_a_family_the_user_set_any_variable_of_is_theirs() -> None:
    # a key of the user's own must never be sent to the proxy, nor the proxy's token elsewhere
    anthropic = {
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_URL",
        "ANTHROPIC_API_BASE",
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_ATTRIBUTION_HEADER",
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


# -- the context window Claude Code plans with (issue 54) -----------------------------------------


def test_claude_code_is_told_the_smallest_window_among_the_models_it_does_not_know() -> None:
    windows = {
        "course-model": 131_072,
        "big-model": 400_000,
        # its own ids and the 1M names: Claude Code uses its own windows for these
        "claude-sonnet-4-5": 100_000,
        "Course-Model[1m]": 70_000,
        # too small for Claude Code to run in at all: not imposed on the models that can
        "tiny-local": 8_192,
    }
    found = ai_environment("http://h/rsql/", "tok", {}, windows)
    assert found["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "131072"
    # no window known for a model it does not know: nothing, rather than a guess
    assert "CLAUDE_CODE_MAX_CONTEXT_TOKENS" not in ai_environment(
        "http://h/rsql/", "tok", {}, {"claude-haiku-4-5": 200_000, "tiny-local": 8_192}
    )
    assert "CLAUDE_CODE_MAX_CONTEXT_TOKENS" not in ai_environment("http://h/rsql/", "tok", {})


def test_a_window_the_user_set_or_a_claude_code_pointed_elsewhere_stays_theirs() -> None:
    windows = {"course-model": 131_072}
    mine = {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": "32000"}
    assert "CLAUDE_CODE_MAX_CONTEXT_TOKENS" not in ai_environment("http://h/", "tok", mine, windows)
    # their own Anthropic endpoint: the proxy's models are not what Claude Code talks to
    theirs = {"ANTHROPIC_BASE_URL": "https://gateway.example"}
    assert "CLAUDE_CODE_MAX_CONTEXT_TOKENS" not in ai_environment(
        "http://h/", "tok", theirs, windows
    )


def test_the_windows_are_what_the_configuration_states_the_smallest_where_several_serve_one() -> (
    None
):
    specs = parse_upstreams(
        [
            {"name": "gpu", "provider": "llama_cpp", "models": ["course-model"], "n_ctx": 131_072},
            {"name": "lab", "provider": "llama_cpp", "models": ["course-model"], "n_ctx": 98_304},
            {"name": "groq", "base_url": "https://api.groq.com/openai/v1", "api_key": "k"},
            {
                "name": "openai",
                "base_url": "https://api.openai.com/v1",
                "api_key": "k",
                "models": {"big-model": "gpt-5", "course-model": "gpt-5-mini"},
                "context_windows": {"big-model": 400_000, "course-model": 120_000},
            },
        ]
    )
    # a hosted upstream states a window only where the admin does (context_windows)
    assert served_windows(specs) == {"course-model": 98_304, "big-model": 400_000}
    for bad, says in (
        ({"nope": 4096}, "does not serve"),
        ({"big-model": 100}, "integer >= 1024"),
        ([4096], "must be a dict"),
    ):
        with pytest.raises(ConfigError, match=says):
            parse_upstreams(
                [
                    {
                        "name": "o",
                        "base_url": "https://x/v1",
                        "api_key": "k",
                        "models": ["big-model"],
                        "context_windows": bad,
                    }
                ]
            )


def test_a_hub_tells_claude_code_the_window_its_proxy_configuration_states(tmp_path) -> None:
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(
        "c.RSQLProxy.upstreams = [{'name': 'gpu', 'provider': 'llama_cpp', "
        "'models': ['course-model'], 'n_ctx': 131072}]\n"
    )
    c = Config()
    configure_jupyterhub(c, config_file=str(cfg), url="http://127.0.0.1:10101", ai_tools=True)
    assert c.Spawner.environment["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "131072"
    # a file the hub cannot read (a key variable only the service has): the rest still holds
    cfg.write_text("c.RSQLProxy.upstreams = [{'name': 'g', 'api_key_env': 'ONLY_IN_SERVICE'}]\n")
    c2 = Config()
    configure_jupyterhub(c2, config_file=str(cfg), url="http://127.0.0.1:10101", ai_tools=True)
    assert "CLAUDE_CODE_MAX_CONTEXT_TOKENS" not in c2.Spawner.environment
    assert callable(c2.Spawner.environment["ANTHROPIC_API_KEY"])
