"""Helpers for the %%ask tests: optional components, and running notebooks in real kernels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_or_skip(module: str, reason: str = "", *, binary: bool = False) -> None:
    """Skip when ``module`` (or a binary) is missing; in CI (``CI=true``) fail instead."""
    from tests.conftest import require

    require(module, binary=binary, reason=reason)


def require_r() -> None:
    require_or_skip("R", "R context tests need R (apt r-base-core)", binary=True)
    require_or_skip("rpy2", "R context tests need rpy2 3.5.x (pip install rsql-assistant[r])")
    try:
        import_rpy2()  # R must also load: rpy2 3.6 fails on R 4.2
    except Exception as e:  # pragma: no cover - environment problem
        if IN_CI:
            pytest.fail(f"rpy2 cannot start R: {e}")
        pytest.skip(f"rpy2 cannot start R: {e}")


def import_rpy2() -> None:
    """Start R in this process without leaking R's LD_LIBRARY_PATH to later servers and kernels."""
    from rsql_magic.context.rsession import import_robjects

    import_robjects()


def kernel_env(proxy_url: str | None, token: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a test kernel: the repo importable, discovery pinned to ``proxy_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RSQL_", "JUPYTERHUB_"))}
    env.pop("JPY_PARENT_PID", None)
    # keep provider keys out, so a missing proxy is "no proxy found", not the in-process engine
    for k in list(env):
        if k.endswith("_API_KEY"):
            env.pop(k)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if proxy_url:
        env["RSQL_PROXY_URL"] = proxy_url
    if token:
        env["RSQL_PROXY_TOKEN"] = token
    env.update(extra)
    return env


def make_notebook(cells: list[str], raises: tuple[int, ...] = ()) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    for i in raises:
        nb.cells[i].metadata["tags"] = ["raises-exception"]
    return nb


def run_notebook(nb: Any, env: dict[str, str], cwd: Path, timeout: int = 120) -> Any:
    """Execute ``nb`` in a fresh ipykernel through nbclient (as nbconvert / papermill do)."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute(env=env, cwd=str(cwd))
    return nb


def outputs_text(cell: Any) -> str:
    """All text a cell showed: streams, markdown / plain display data, errors."""
    def text(v: Any) -> str:  # on disk, multi-line strings are lists of lines
        return "".join(v) if isinstance(v, list) else str(v or "")

    parts: list[str] = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(text(out.get("text", "")))
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            parts.append(text(data.get("text/markdown") or data.get("text/plain")))
        elif kind == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "\n".join(parts)


def user_prompts(received: list[Any]) -> list[str]:
    """The user message of each request the upstream received."""
    out = []
    for r in received:
        msgs = r.body.get("messages", [])
        out.append("\n".join(str(m.get("content", "")) for m in msgs if m.get("role") == "user"))
    return out
