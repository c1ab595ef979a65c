"""Every example on the admin pages starts as written (#42): an admin copies a block into
`rsql_config.py` or `jupyterhub_config.py` and expects the service to start.

Each ```python block of the admin pages (docs/admins/*.md and every page the admins' table of
contents names elsewhere) is read from the page and loaded the way its file would be: a proxy
configuration (`c.RSQLProxy.*`, `c.RSQLProxyService.*`) through
`rsql-proxy --check-config`'s own check (what start-up validates: upstreams, models, limits,
overrides, windows, the fallback, admin names), with each `api_key_env` it names set; a hub
configuration (`c.JupyterHub.*`, `configure_jupyterhub`) executed against a traitlets Config,
the way JupyterHub loads it. The shell blocks, and the transcripts (plain blocks of `$ `
lines), are run here or elsewhere (tests/e2e/test_admin_cli.py runs console.md's commands
against a real service) or are listed below with the reason they cannot run here. A new block
that is none of these fails here.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_server_ext import service
from jupyter_server_ext.engine.errors import ConfigError
from jupyter_server_ext.service import RSQLProxyService
from tests.helpers import REPO

ADMIN_DOCS = REPO / "docs" / "admins"
# a fenced block, at the margin or indented under a list item (its fences indented alike)
BLOCK = re.compile(r"^([ \t]*)```(\w*)\n(.*?)^\1```", re.M | re.S)
# the admins' table of contents: its entries outside docs/admins (`/local-model`)
TOC_ELSEWHERE = re.compile(r"^/([\w/-]+)$", re.M)

# shell blocks and transcripts, and where they run, or why they cannot
SHELL = {
    ("console.md", "rsql-proxy admin status"): "run by tests/e2e/test_admin_cli.py",
    ("console.md", "$ rsql-proxy admin keys"): "run by tests/e2e/test_admin_cli.py",
    ("hub-service.md", "$ rsql-proxy --config rsql_config.py --workers 2"): "run below",
    ("rsql-eval.md", "rsql-eval questions.jsonl"): "needs the reader's own database and questions",
    ("courses.md", "for folder in submitted/*/"): "run by tests/e2e/test_provenance_proxy.py",
    ("tracing.md", "pip install"): "installs from PyPI: no network in the tests",
    ("local-model.md", "scripts/install-llama-cpp.sh"): "the project's set-up runs this script",
    ("kubernetes.md", "docker build"): "needs a Docker engine and a registry",
    ("kubernetes.md", "helm install"): "needs a Kubernetes cluster",
    ("kubernetes.md", "kubectl"): "needs a Kubernetes cluster; tests/e2e/test_deploy_manifests.py "
    "validates the manifests offline",
    ("kubernetes.md", "helm upgrade"): "needs a Kubernetes cluster",
    (
        "kubernetes.md",
        "pip-compile",
    ): "compiles the image's lock from PyPI: no network in the tests",
}


def admin_pages() -> list[Path]:
    """docs/admins/*.md and the pages the admins' table of contents names elsewhere."""
    toc = (ADMIN_DOCS / "index.md").read_text()
    elsewhere = [REPO / "docs" / f"{name}.md" for name in TOC_ELSEWHERE.findall(toc)]
    return sorted(ADMIN_DOCS.glob("*.md")) + [p for p in elsewhere if p.parent != ADMIN_DOCS]


def blocks(kind: str) -> list[tuple[str, int, str]]:
    """(page, line, code) of every ```kind block on the admin pages; kind "$" is a transcript:
    a plain block whose lines are commands after `$ ` and what they print."""
    out = []
    for page in admin_pages():
        text = page.read_text()
        for m in BLOCK.finditer(text):
            fence, code = m.group(2), textwrap.dedent(m.group(3))
            if fence == kind or (kind == "$" and not fence and code.startswith("$ ")):
                out.append((page.name, text[: m.start()].count("\n") + 1, code))
    return out


def is_hub_config(code: str) -> bool:
    return "c.JupyterHub" in code or "configure_jupyterhub" in code or "c.Spawner" in code


@pytest.fixture(autouse=True)
def servers_not_asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The examples name servers of a deployment (redis.internal, db.internal): whether those
    answer is --check-config's look at a real one (tests/e2e/test_check_config_replicas.py),
    not the example's to pass. A unit test connects to nothing: the look is left out, and what it
    would have asked is noted."""
    asked: list[str] = []

    def noted(proxy: Any) -> list[str]:
        asked.extend(url for url in (proxy.state_url, proxy.database_url) if url)
        return []

    monkeypatch.setattr(service, "reach_problems", noted)
    return asked


def check_proxy_config(path: Path) -> str:
    """What `rsql-proxy --check-config --config PATH` checks, in this process (the servers it
    names not asked: `servers_not_asked`)."""
    app = RSQLProxyService()
    app.initialize(["--check-config", "--config", str(path)])
    return app.checked()


PYTHON = blocks("python")
PROXY = [b for b in PYTHON if not is_hub_config(b[2])]
HUB = [b for b in PYTHON if is_hub_config(b[2])]


def test_every_block_is_run_or_says_why_not() -> None:
    assert len(PROXY) >= 10 and len(HUB) >= 3  # the pages' examples were found at all
    assert {"local-model.md", "kubernetes.md"} <= {p.name for p in admin_pages()}
    shell = blocks("bash") + blocks("$")
    assert len(blocks("$")) >= 2
    for page, line, code in shell:
        reasons = [why for (p, start), why in SHELL.items() if p == page and start in code]
        assert reasons, f"{page}:{line}: a shell example neither run nor listed in SHELL"


def test_the_workers_transcript_is_what_start_up_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hub-service.md shows `rsql-proxy --workers 2` without shared state refused: the page
    quotes the message start-up gives, word for word."""
    ((_, _, transcript),) = [b for b in blocks("$") if "--workers 2" in b[2]]
    command, *said = transcript.strip().splitlines()
    argv = command.removeprefix("$ ").split()
    assert argv[:1] == ["rsql-proxy"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rsql_config.py").write_text(
        'c.RSQLProxy.upstreams = [{"name": "g", "base_url": "http://127.0.0.1:9/v1", '
        '"api_key": "sk-docs-example", "models": ["m-1"]}]\n'
    )
    app = RSQLProxyService()
    app.initialize(argv[1:])
    with pytest.raises(ConfigError) as refused:
        app.checked()
    assert " ".join(" ".join(said).split()) == f"rsql-proxy: bad configuration: {refused.value}"
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
    # the page says check-config names a group's limits replacing the global ones
    assert "group:students: user_limits 20/minute, 200/day replace the global" in summary
    from jupyter_server_ext.engine.upstreams.specs import parse_upstreams

    local = next(u for u in parse_upstreams(eval_upstreams(code)) if u.name == "local")
    assert local.serves("smollm2-135m") and not local.serves("llama-3.1-8b-instant")


def eval_upstreams(code: str) -> object:
    """The upstreams a configuration block sets, as traitlets would load them."""
    c = Config()
    exec(compile(code, "rsql_config.py", "exec"), {"c": c})
    return c.RSQLProxy.upstreams


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
    from jupyter_server_ext.config.proxy import RSQLProxy

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
