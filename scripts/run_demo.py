"""The main job: run notebooks/demo.ipynb headless, through the proxy in a real Jupyter server.

The proxy's upstreams come from ./rsql_config.py (c.RSQLProxy.* settings) when it exists, else
the local SmolLM2-135M model answers (weak, but needs no key and no network). The executed
notebook is written to notebooks/demo.html; a failing cell fails this script.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "demo.ipynb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def proxy_server(config: Path | None, work: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """A Jupyter server with the proxy, configured from `config` (None: the local model);
    yields its URL, token and the environment a kernel needs to reach its proxy."""
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    if config is not None:
        cmd.append(f"--config={config}")
    else:
        # a tiny model on a laptop CPU: give each answer time rather than fail the demo
        cmd.append("--RSQLProxy.upstream_timeout_seconds=300")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(work / "runtime")}
    log_path = work / "server.log"
    log = log_path.open("wb")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                raise RuntimeError("the Jupyter server exited:\n" + log_path.read_text())
            try:
                urllib.request.urlopen(f"{url}api/status?token={token}", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "the Jupyter server did not start:\n" + log_path.read_text()
                    ) from None
                time.sleep(0.3)
        yield url, token, {**env, "RSQL_PROXY_URL": f"{url}rsql/", "RSQL_PROXY_TOKEN": token}
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="rsql-demo-"))
    user_config = Path(os.environ.get("RSQL_CONFIG", ROOT / "rsql_config.py"))
    if user_config.exists():
        print(f"proxy configured from {user_config}")
    else:
        print("no rsql_config.py: the proxy answers with the local model")
    try:
        with proxy_server(user_config if user_config.exists() else None, work) as (
            url,
            _,
            kernel_env,
        ):
            print(f"proxy ready at {url}rsql/; running {NOTEBOOK.name} headless")
            # batch runs record answers for replay (the notebook's last section shows them); the
            # demo records into its own temporary folder, so each run asks the proxy afresh and
            # no answer of the weak local model is replayed once keys are configured
            kernel_env.setdefault("RSQL_REPLAY_FILE", str(work / "replay.jsonl"))
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "jupyter",
                    "nbconvert",
                    "--to",
                    "html",
                    "--execute",
                    "--ExecutePreprocessor.timeout=600",
                    str(NOTEBOOK),
                    "--output",
                    "demo.html",
                ],
                env=kernel_env,
            )
    except RuntimeError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    if done.returncode == 0:
        print(f"wrote {NOTEBOOK.with_suffix('.html')}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
