"""LiteLLM's proxy for the side-by-side and quota sections of bench/bench_proxy.py: always
offline, in the loopback-only network namespace, every fetch URL dead."""

from __future__ import annotations

import os
from pathlib import Path

from common import KEYS, LITELLM_VENV, Netns, Procs, free_port, wait_http

DEAD = "http://127.0.0.1:9/"  # the discard port: nothing listens there


def litellm_env() -> dict[str, str]:
    """Mandatory for every LiteLLM start: offline, no telemetry, every fetch URL dead."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LITELLM_", "DATABASE_", "OPENAI_"))
    }
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_OFFLINE_MODE": "true",
            "LITELLM_TELEMETRY_DISABLED": "true",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_MODEL_COST_MAP_URL": DEAD + "model_prices.json",
            "LITELLM_BLOG_POSTS_URL": DEAD + "blog_posts.json",
            "LITELLM_AUTOROUTER_PRESETS_URL": DEAD + "presets.json",
            "LITELLM_ANTHROPIC_BETA_HEADERS_URL": DEAD + "beta_headers.json",
            "LITELLM_LENS_URL": DEAD,
            "LITELLM_LOG": "ERROR",
            "DISABLE_SCHEMA_UPDATE": "true",
            "NO_DOCS": "True",
            "NO_REDOC": "True",
            "HF_HUB_OFFLINE": "1",
            "TIKTOKEN_CACHE_DIR": str(LITELLM_VENV / "tiktoken-cache"),
        }
    )
    return env


def litellm_config(path: Path, base_url: str, *, rpm: int | None = None) -> Path:
    """Three deployments of fake-small (the three keys), priced, no database."""
    lines = ["model_list:"]
    for key in KEYS:
        lines += [
            "  - model_name: fake-small",
            "    litellm_params:",
            "      model: openai/fake-small",
            f"      api_base: {base_url}",
            f"      api_key: {key}",
            "      input_cost_per_token: 0.00000005",
            "      output_cost_per_token: 0.00000008",
        ]
        if rpm:
            lines.append(f"      rpm: {rpm}")
    lines += [
        "litellm_settings:",
        "  telemetry: false",
        "  drop_params: true",
        "  num_retries: 2",
        "general_settings:",
        "  master_key: sk-litellm-bench-0000",
        "  disable_spend_logs: true",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_litellm(
    procs: Procs, base_url: str, ns: Netns, *, rpm: int | None = None, name: str = "litellm"
) -> tuple[str, str]:
    """LiteLLM's proxy, one worker, inside the loopback-only namespace `ns` (never outside)."""
    if ns is None:
        raise RuntimeError("LiteLLM only ever runs inside the loopback-only network namespace")
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} is missing: run bench/install_litellm.sh")
    work = procs.workdir / name
    work.mkdir(parents=True, exist_ok=True)
    cfg = litellm_config(work / "config.yaml", base_url, rpm=rpm)
    port = free_port()
    proc = procs.start(
        name,
        [
            *ns.prefix(),
            str(exe),
            "--config",
            str(cfg),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--num_workers",
            "1",
        ],
        env=litellm_env(),
        cwd=work,
        replace_env=True,
    )
    # start-up takes a while (imports); the env above keeps it from reaching out
    base = f"http://127.0.0.1:{port}/"
    wait_http(base + "health/liveliness", proc, procs, name, ns=ns, timeout=180)
    return base + "v1/chat/completions", "Bearer sk-litellm-bench-0000"
