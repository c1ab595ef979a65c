"""Every example on the admin pages starts as written (#42): an admin copies a block into
`rsql_config.py` or `jupyterhub_config.py` and expects the service to start.

Each ```python block of docs/admins/*.md is read from the page and loaded the way its file
would be: a proxy configuration (`c.RSQLProxy.*`, `c.RSQLProxyService.*`) through
`rsql-proxy --check-config`'s own check (what start-up validates: upstreams, models, limits,
overrides, windows, the fallback, admin names), with each `api_key_env` it names set; a hub
configuration (`c.JupyterHub.*`, `configure_jupyterhub`) executed against a traitlets Config,
the way JupyterHub loads it. The shell blocks are run elsewhere
(tests/e2e/test_admin_cli.py runs console.md's commands against a real service) or are listed
below with the reason they cannot run here. A new block that is none of these fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from traitlets.config import Config

from jupyter_server_ext.engine.errors import ConfigError
from jupyter_server_ext.service import RSQLProxyService
from tests.helpers import REPO

ADMIN_DOCS = REPO / "docs" / "admins"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)

# shell blocks and where they run, or why they cannot
SHELL = {
    ("console.md", "rsql-proxy admin status"): "run by tests/e2e/test_admin_cli.py",
    ("rsql-eval.md", "rsql-eval questions.jsonl"): "needs the reader's own database and questions",
    ("tracing.md", "pip install"): "installs from PyPI: no network in the tests",
}


def blocks(kind: str) -> list[tuple[str, int, str]]:
    """(page, line, code) of every ```kind block on the admin pages."""
    out = []
    for page in sorted(ADMIN_DOCS.glob("*.md")):
        text = page.read_text()
        for m in BLOCK.finditer(text):
            if m.group(1) == kind:
                out.append((page.name, text[: m.start()].count("\n") + 1, m.group(2)))
    return out


def is_hub_config(code: str) -> bool:
    return "c.JupyterHub" in code or "configure_jupyterhub" in code or "c.Spawner" in code


def check_proxy_config(path: Path) -> str:
    """What `rsql-proxy --check-config --config PATH` checks, in this process."""
    app = RSQLProxyService()
    app.initialize(["--check-config", "--config", str(path)])
    return app.checked()


PYTHON = blocks("python")
PROXY = [b for b in PYTHON if not is_hub_config(b[2])]
HUB = [b for b in PYTHON if is_hub_config(b[2])]


def test_every_block_is_run_or_says_why_not() -> None:
    assert len(PROXY) >= 10 and len(HUB) >= 3  # the pages' examples were found at all
    for page, line, code in blocks("bash"):
        reasons = [why for (p, start), why in SHELL.items() if p == page and start in code]
        assert reasons, f"{page}:{line}: a shell example neither run nor listed in SHELL"
    for page, line, code in blocks("python"):
        assert "c." in code or "configure_jupyterhub" in code, f"{page}:{line}: not a config"


@pytest.mark.parametrize(("page", "line", "code"), PROXY, ids=[f"{p}:{n}" for p, n, _ in PROXY])
def test_a_proxy_example_starts_as_written(
    page: str, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in set(re.findall(r'"api_key_env":\s*"(\w+)"', code)):
        monkeypatch.setenv(name, f"sk-docs-example-{name.lower()}")
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "rsql_config.py"
    path.write_text(code)
    summary = check_proxy_config(path)
    assert summary.startswith(f"{path}: starts as written"), summary


def test_the_policies_example_serves_what_it_promises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worked example's students get llama-3.1-8b-instant, staff gpt-4o, and the lab
    window's local model is there and serves its own name only (not every name)."""
    (_, _, code), *_ = [b for b in PROXY if b[0] == "policies.md"]
    monkeypatch.setenv("GROQ_API_KEY", "gsk-docs-example")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-example")
    path = tmp_path / "rsql_config.py"
    path.write_text(code)
    summary = check_proxy_config(path)
    assert "models: gpt-4o, llama-3.1-8b-instant, smollm2-135m;" in summary
    assert "default model: llama-3.1-8b-instant" in summary


def test_copying_both_pages_overrides_keeps_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """limits-budgets.md and policies.md both set limit_overrides: one file with both keeps
    the entries of each (the pages use .update, so the second does not replace the first)."""
    code = "\n".join(c for p, _, c in PROXY if p in ("limits-budgets.md", "policies.md"))
    monkeypatch.setenv("GROQ_API_KEY", "gsk-docs-example")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-example")
    path = tmp_path / "rsql_config.py"
    path.write_text(code)
    check_proxy_config(path)
    app = RSQLProxyService()
    app.initialize(["--config", str(path)])
    from jupyter_server_ext.config import RSQLProxy

    overrides = RSQLProxy(parent=app).limit_overrides
    assert {"user:alice", "group:staff", "group:students"} <= set(overrides)


def test_a_bad_example_would_be_caught(tmp_path: Path) -> None:
    """The check is not a formality: the policies example as it was (no local model for a
    local-only window) and an upstream's key variable unset both fail it, naming the cause."""
    path = tmp_path / "rsql_config.py"
    path.write_text(
        'c.RSQLProxy.upstreams = [{"name": "g", "base_url": "https://api.groq.com/openai/v1", '
        '"api_key": "gsk-x", "models": ["llama-3.1-8b-instant"]}]\n'
        'c.RSQLProxy.policy_windows = [{"name": "lab", "groups": ["*"], "mode": "local-only", '
        '"weekly": {"days": ["tue"], "start": "14:00", "end": "16:00"}}]\n'
    )
    with pytest.raises(ConfigError, match="local"):
        check_proxy_config(path)
    path.write_text(
        'c.RSQLProxy.upstreams = [{"name": "g", "base_url": "https://api.groq.com/openai/v1", '
        '"api_key_env": "RSQL_DOCS_UNSET_KEY", "models": ["m"]}]\n'
    )
    with pytest.raises(ConfigError, match="RSQL_DOCS_UNSET_KEY"):
        check_proxy_config(path)


@pytest.mark.parametrize(("page", "line", "code"), HUB, ids=[f"{p}:{n}" for p, n, _ in HUB])
def test_a_hub_example_loads_as_written(
    page: str, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rsql_config.py").write_text("c.RSQLProxy.default_model = ''\n")
    c = Config()
    exec(compile(code, f"{page}:{line}", "exec"), {"c": c, "get_config": lambda: c})
    services = c.JupyterHub.services
    assert [s["name"] for s in services] == ["rsql"], services
    assert c.Spawner.environment["RSQL_PROXY_URL"].endswith("/services/rsql/")
