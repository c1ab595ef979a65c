"""A bad configuration stops the server at start-up, naming the field, the upstream or the
privacy setting (the proxy in a Jupyter server in this process, pytest-jupyter)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider


def test_bad_config_stops_startup_naming_field_and_upstream(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    ups = upstreams_for(fresh_provider)
    next(u for u in ups if u["name"] == "a2")["limts"] = ["30/minute"]
    with pytest.raises(RuntimeError) as err:
        jupyter_app_factory({"upstreams": ups})
    assert "upstream 'a2': unknown field 'limts'" in str(err.value)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("limits", ["30 per fortnight"], "cannot parse limit '30 per fortnight'"),
        ("api_key_env", "RSQL_TEST_UNSET_VAR", "$RSQL_TEST_UNSET_VAR, which is not set"),
        ("name", "a1", "duplicate name"),
        ("repeat_penalty", 3, "field 'repeat_penalty' must be a number from 1.0 to 2.0, got 3"),
        (
            "repeat_penalty",
            "high",
            "field 'repeat_penalty' must be a number from 1.0 to 2.0, got 'high'",
        ),
        ("stop_loops", "yes", "field 'stop_loops' must be true or false, got 'yes'"),
        ("n_threads", 0, "field 'n_threads' must be an integer from 1 to 64, got 0"),
        ("n_threads", 65, "field 'n_threads' must be an integer from 1 to 64, got 65"),
        ("n_threads", "2", "field 'n_threads' must be an integer from 1 to 64, got '2'"),
        ("n_threads", True, "field 'n_threads' must be an integer from 1 to 64, got True"),
        (
            "chat_format",
            "gemma-9",
            "field 'chat_format' 'gemma-9' is not one of llama.cpp's chat formats: alpaca, ",
        ),
    ],
)
def test_bad_upstream_values_are_named(
    field: str, value, needle: str, fresh_provider: FakeProvider
) -> None:
    from jupyter_server_ext.config.proxy import RSQLProxy
    from jupyter_server_ext.engine.errors import ConfigError

    ups = upstreams_for(fresh_provider)
    if field == "api_key_env":
        ups[0].pop("api_key")
    ups[0 if field != "name" else 1][field] = value
    with pytest.raises(ConfigError, match=re.escape(needle)):
        RSQLProxy(upstreams=ups).engine_settings(env={})


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (
            {"redact_patterns": ["email", {"name": "sid", "regex": "S(\\d{7}"}]},
            "redact_patterns[1] ('sid'): bad regular expression",
        ),
        ({"redact_patterns": ["passport"]}, "unknown pattern 'passport'"),
        ({"context_policy": {"sample_row": False}}, "context_policy: unknown field 'sample_row'"),
        (
            {"context_policy": {"value_stats": "no"}},
            "context_policy['value_stats']: expected True or False",
        ),
        ({"fallback_model": "nowhere"}, "fallback_model 'nowhere' names no upstream"),
    ],
)
def test_bad_privacy_config_stops_startup(
    jupyter_app_factory, fresh_provider: FakeProvider, config: dict, needle: str
) -> None:
    with pytest.raises(RuntimeError) as err:
        jupyter_app_factory({"upstreams": upstreams_for(fresh_provider), **config})
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (
            {"shutdown_grace_seconds": -1.0},
            "RSQLProxy.shutdown_grace_seconds must be >= 0, got -1.0",
        ),
        ({"usage_spool_max_bytes": 0}, "RSQLProxy.usage_spool_max_bytes must be positive, got 0"),
    ],
)
def test_bad_shutdown_and_spool_settings_stop_startup(
    jupyter_app_factory, fresh_provider: FakeProvider, config: dict, needle: str
) -> None:
    with pytest.raises(RuntimeError) as err:
        jupyter_app_factory({"upstreams": upstreams_for(fresh_provider), **config})
    assert needle in str(err.value)


def test_a_jupyter_server_says_every_problem_at_once_and_exits_2(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    """The extension host checks as rsql-proxy does: one line per problem, the setting named
    (a wrong type used to end the server with a traceback naming none)."""
    with pytest.raises(RuntimeError) as err:
        jupyter_app_factory(
            {
                "upstreams": upstreams_for(fresh_provider),
                "max_wait_seconds": "ten",
                "default_modle": "fake-small",
            }
        )
    said = str(err.value)
    assert "jupyter server exited (2)" in said
    problems = re.findall(r"rsql proxy: bad configuration: (.*)", said)
    assert len(problems) == 2, said
    assert any("max_wait_seconds" in p for p in problems)
    assert any("default_modle" in p and "default_model" in p for p in problems)


def test_every_setting_an_admin_writes_reaches_the_engine(fresh_provider: FakeProvider) -> None:
    # each trait marked engine=True is copied into EngineSettings by name; a changed value of
    # every one arrives, and no EngineSettings field is left to its default unseen
    import dataclasses

    from traitlets import Bool, Float, Integer

    from jupyter_server_ext.config.proxy import RSQLProxy
    from jupyter_server_ext.engine import EngineSettings

    ups = upstreams_for(fresh_provider)
    choices = {
        "unpriced_models": "free",
        "forward_user": "name",
        "fallback_model": ups[-1]["name"],
        "admin_timezone": "Europe/Paris",
    }
    changed = {}
    for name, trait in RSQLProxy.class_traits(engine=True).items():
        if isinstance(trait, Bool):
            changed[name] = not trait.default_value
        elif isinstance(trait, Integer):
            changed[name] = trait.default_value + 3
        elif isinstance(trait, Float):
            changed[name] = trait.default_value + 1.5
        else:
            changed[name] = choices[name]
    settings = RSQLProxy(upstreams=ups, **changed).engine_settings(env={})
    assert {name: getattr(settings, name) for name in changed} == changed
    # the fields engine_settings builds from other settings, or the wiring sets
    built = (
        "upstreams default_model limits request_limits user_id_secret redact_patterns"
        " context_policy fallback_on alerts policy_windows inline hosted_tools"
        " usage_spool_dir usage_spool_max_bytes"
    ).split()
    fields = {f.name for f in dataclasses.fields(EngineSettings)}
    assert fields == set(changed) | set(built)


def problem_lines(fp: FakeProvider, **settings: Any) -> list[str]:
    """The lines of the ConfigError a proxy with `settings` refuses to start with."""
    from jupyter_server_ext.config.proxy import RSQLProxy
    from jupyter_server_ext.engine.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        RSQLProxy(upstreams=upstreams_for(fp), **settings).engine_settings(env={})
    return str(err.value).splitlines()


def test_a_number_outside_the_bound_its_setting_declares_is_named(
    fresh_provider: FakeProvider,
) -> None:

    bad = {"breaker_threshold": 0, "lease_seconds": 0.0, "cache_ttl_seconds": -1.0}
    lines = problem_lines(fresh_provider, **bad)
    assert "RSQLProxy.breaker_threshold must be >= 1, got 0" in lines
    assert "RSQLProxy.lease_seconds must be > 0, got 0.0" in lines
    assert "RSQLProxy.cache_ttl_seconds must be >= 0, got -1.0" in lines


def test_a_request_bound_outside_its_range_is_named_once_and_the_rest_reach_the_engine(
    fresh_provider: FakeProvider,
) -> None:
    """The request settings' ranges are declared on their traits (``bound``) and checked with
    every other setting's: each wrong one named once, one line each; the right ones reach the
    engine's ``RequestLimits`` by name."""
    from jupyter_server_ext.config.proxy import RSQLProxy
    from jupyter_server_ext.engine.bodies.request import RequestLimits

    bad = {"max_body_bytes": 1000, "max_json_depth": 501, "max_messages": 0, "max_json_items": 0}
    lines = problem_lines(fresh_provider, **bad)
    for line in (
        "RSQLProxy.max_body_bytes must be >= 1024, got 1000",
        "RSQLProxy.max_json_depth must be from 2 to 500, got 501",
        "RSQLProxy.max_messages must be >= 1, got 0",
        "RSQLProxy.max_json_items must be >= 1, got 0",
    ):
        assert lines.count(line) == 1, lines
    good = {"max_body_bytes": 2048, "max_json_depth": 2, "max_messages": 7, "max_json_items": 9}
    proxy = RSQLProxy(upstreams=upstreams_for(fresh_provider), **good)
    limits = proxy.engine_settings(env={}).request_limits
    assert (limits.max_body_bytes, limits.max_json_depth) == (2048, 2)
    assert (limits.max_messages, limits.max_json_items) == (7, 9)
    assert limits.max_file_parts == RequestLimits().max_file_parts  # no setting: the default


def test_the_inline_completion_bounds_are_named_with_every_other_mistake(
    fresh_provider: FakeProvider,
) -> None:
    from jupyter_server_ext.config.proxy import RSQLProxy

    bad = {
        "completion_max_tokens": 0,
        "completion_user_concurrency": -1,
        "completion_user_limits": ["30/fortnight"],
        "breaker_threshold": 0,
    }
    lines = problem_lines(fresh_provider, **bad)
    assert "RSQLProxy.completion_max_tokens must be from 1 to 4096, got 0" in lines
    assert "RSQLProxy.completion_user_concurrency must be >= 0, got -1" in lines
    assert "RSQLProxy.breaker_threshold must be >= 1, got 0" in lines
    assert any("completion_user_limits" in line and "fortnight" in line for line in lines), lines
    ok = RSQLProxy(
        upstreams=upstreams_for(fresh_provider),
        completion_max_tokens=4096,
        completion_user_concurrency=0,
    ).engine_settings(env={})
    assert ok.inline is not None and ok.inline.max_tokens == 4096
    assert ok.limits.completion_concurrency == 0


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "llama_cpp"])
def test_fill_in_the_middle_on_an_upstream_without_v1_completions_is_named(
    provider: str, tmp_path: Any
) -> None:
    """``completion_fim`` sends the editor's completions to v1/completions with a suffix, which
    only OpenAI-compatible servers speak (the kind's endpoints say so): an upstream of another
    kind serving the completion model stops start-up, named; an OpenAI-compatible one is fine."""
    from jupyter_server_ext.config.proxy import RSQLProxy
    from jupyter_server_ext.engine.errors import ConfigError

    other = {"name": "other", "provider": provider, "models": ["code"]}
    if provider == "llama_cpp":
        other["model_path"] = str(tmp_path / "m.gguf")
        (tmp_path / "m.gguf").write_bytes(b"GGUF")
    else:  # a hosted provider at its own default address
        other["api_key"] = "sk-test-other"
    with pytest.raises(ConfigError) as err:
        RSQLProxy(upstreams=[other], completion_model="code", completion_fim=True).engine_settings(
            env={}
        )
    assert (
        "RSQLProxy.completion_fim: upstream 'other' speaks no v1/completions with a suffix"
        in str(err.value)
    )
    served = {
        "name": "vllm",
        "base_url": "https://vllm.test/v1",
        "api_key": "sk-test-vllm",
        "models": ["code"],
    }
    ok = RSQLProxy(
        upstreams=[served], completion_model="code", completion_fim=True
    ).engine_settings(env={})
    assert ok.inline is not None and ok.inline.fim is True


def test_the_alert_settings_bounds_are_named_with_every_other_mistake(
    fresh_provider: FakeProvider,
) -> None:
    from jupyter_server_ext.config.proxy import RSQLProxy

    bad = {
        "alert_error_rate": 1.0,
        "alert_min_requests": 0,
        "alert_dedupe_seconds": 0.0,
        "alert_retries": 21,
        "alert_retry_seconds": -1.0,
        "alert_webhooks": ["ftp://hooks.example/x"],
    }
    lines = problem_lines(fresh_provider, **bad)
    for line in (
        "RSQLProxy.alert_error_rate must be between 0 and 1, got 1.0",
        "RSQLProxy.alert_min_requests must be >= 1, got 0",
        "RSQLProxy.alert_dedupe_seconds must be > 0, got 0.0",
        "RSQLProxy.alert_retries must be from 0 to 20, got 21",
        "RSQLProxy.alert_retry_seconds must be > 0, got -1.0",
    ):
        assert lines.count(line) == 1, lines
    assert any("alert_webhooks" in line for line in lines), lines
    ok = RSQLProxy(
        upstreams=upstreams_for(fresh_provider), alert_error_rate=0.5, alert_retries=0
    ).engine_settings(env={})
    assert (ok.alerts.error_rate, ok.alerts.retries) == (0.5, 0)


# the settings the engine declares whole, and the RSQLProxy trait made from each
DECLARED = {
    "EngineSettings": ({}, "jupyter_server_ext.engine.settings"),
    "RequestLimits": ({}, "jupyter_server_ext.engine.bodies.request"),
    "AlertSettings": (
        {
            "error_rate": "alert_error_rate",
            "min_requests": "alert_min_requests",
            "dedupe_seconds": "alert_dedupe_seconds",
            "retries": "alert_retries",
            "retry_base_seconds": "alert_retry_seconds",
        },
        "jupyter_server_ext.engine.monitoring.alerts",
    ),
    "InlineSettings": (
        {
            "model": "completion_model",
            "fim": "completion_fim",
            "max_tokens": "completion_max_tokens",
        },
        "jupyter_server_ext.engine.settings",
    ),
}


def test_every_declared_setting_is_a_trait_with_its_declarations_type_default_help_and_range() -> (
    None
):
    """Issue 78, step 4: a setting the engine declares (``setting``) is one declaration: every
    one has its ``c.RSQLProxy`` trait, of the kind its type calls for (this table, not
    ``declared.KINDS``), and no trait written by hand beside it says another default, help or
    range (a hand-written trait of the same name would shadow the declaration unseen)."""
    import importlib

    from traitlets import Bool, Float, Integer, Unicode

    from jupyter_server_ext.config.proxy import RSQLProxy

    kinds = {"bool": Bool, "int": Integer, "float": Float, "str": Unicode}
    traits = RSQLProxy.class_traits(config=True)
    seen = 0
    for cls_name, (names, module) in DECLARED.items():
        cls = getattr(importlib.import_module(module), cls_name)
        for f in dataclasses.fields(cls):
            if "help" not in f.metadata:
                continue
            seen += 1
            t = traits[names.get(f.name, f.name)]
            assert type(t) is kinds[str(f.type)], f.name
            assert (t.default_value, t.help) == (f.default, f.metadata["help"]), f.name
            assert t.metadata.get("bound") == f.metadata["bound"], f.name
    assert seen >= 39  # the 39 declared when the declarations came to the engine


def test_a_trait_of_what_is_not_a_declared_setting_or_of_an_unknown_range_is_refused() -> None:
    from dataclasses import dataclass

    from jupyter_server_ext.config.declared import trait
    from jupyter_server_ext.engine import EngineSettings
    from jupyter_server_ext.engine.errors import ConfigError
    from rsql_common.settings import setting

    with pytest.raises(ConfigError, match=r"EngineSettings\.limits is not a declared setting"):
        trait(EngineSettings, "limits")  # a group the configuration builds, not a setting
    with pytest.raises(ConfigError, match=r"EngineSettings\.max_wait_secs is not a declared"):
        trait(EngineSettings, "max_wait_secs")

    @dataclass
    class Odd:
        often: int = setting(3, "How often.", "now and then")
        many: tuple[int, ...] = setting((), "Some numbers.")

    with pytest.raises(ConfigError, match=r"Odd\.often: no trait for 'int' / 'now and then'"):
        trait(Odd, "often")
    with pytest.raises(ConfigError, match=r"Odd\.many: no trait for 'tuple\[int, \.\.\.\]'"):
        trait(Odd, "many")


def test_a_declared_setting_of_the_wrong_type_is_named_by_check_config(tmp_path) -> None:
    """The trait made from a declaration checks its type as a written one did: a string for
    a number is one line of ``rsql-proxy --check-config``."""
    from jupyter_server_ext.config.check import read_config_file, setting_problems
    from jupyter_server_ext.config.proxy import RSQLProxy

    path = tmp_path / "rsql_config.py"
    path.write_text("c.RSQLProxy.max_wait_seconds = 'soon'\nc.RSQLProxy.max_json_depth = 3.5\n")
    config, text = read_config_file(str(path))
    _, lines = setting_problems(
        config, {"RSQLProxy": [RSQLProxy()]}, main=["RSQLProxy"], every_section=True, text=text
    )
    assert any("max_wait_seconds" in line and "soon" in line for line in lines), lines
    assert any("max_json_depth" in line and "3.5" in line for line in lines), lines


def test_a_jupyter_server_says_every_field_of_every_upstream(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    """Issue 77: the extension host, as rsql-proxy, names each upstream's every wrong field
    (it stopped at an upstream's first), one log line each."""
    ups = upstreams_for(fresh_provider)
    ups[0].update(limits=["30/fortnight"], n_ctx=3)
    ups[1].update(limts=["30/minute"], stop_loops="yes")
    with pytest.raises(RuntimeError) as err:
        jupyter_app_factory({"upstreams": ups})
    said = str(err.value)
    assert "jupyter server exited (2)" in said
    problems = re.findall(r"rsql proxy: bad configuration: (.*)", said)
    first, second = ups[0]["name"], ups[1]["name"]
    assert problems == [
        f"upstream {first!r}: field 'n_ctx' must be an integer >= 256, got 3",
        f"upstream {first!r}: field 'limits': cannot parse limit '30/fortnight'; use e.g. "
        "'30/minute', '14400/day' or '5 per 2 seconds'",
        f"upstream {second!r}: unknown field 'limts'; did you mean 'limits'?",
        f"upstream {second!r}: field 'stop_loops' must be true or false, got 'yes'",
    ], said
