"""The main job: run notebooks/demo.ipynb headless, through the proxy in a real Jupyter server.

The proxy's upstreams come from ./rsql_config.py (c.RSQLProxy.* settings) when it exists, else
the local SmolLM2-135M model answers (weak, but needs no key and no network). The executed
notebook is written to notebooks/demo.html (`--output PATH` elsewhere); a failing cell fails this
script. Each cell says when it starts (cell n of N, its first line) and how long it took: with the
local model on a laptop the whole run takes minutes.
"""

from __future__ import annotations

import argparse
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
from typing import Any

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


def _first_line(source: str, width: int = 70) -> str:
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "(empty)")
    return line if len(line) <= width else line[: width - 1] + "…"


class Progress:
    """One line when a code cell starts and one when it ends, flushed at once (the output may
    be a pipe: `make demo | tee`)."""

    def __init__(self, nb: Any) -> None:
        self.index = {id(c): n for n, c in enumerate(_code_cells(nb), 1)}
        self.total = len(self.index)
        self.started = 0.0

    def start(self, cell: Any, **_: Any) -> None:
        if id(cell) in self.index:
            self.started = time.monotonic()
            n = self.index[id(cell)]
            print(f"cell {n} of {self.total}: {_first_line(cell.source)}", flush=True)

    def done(self, cell: Any, **_: Any) -> None:
        if id(cell) in self.index:
            n = self.index[id(cell)]
            took = time.monotonic() - self.started
            print(f"cell {n} of {self.total}: done in {took:.1f} s", flush=True)


def _code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def run_notebook(kernel_env: dict[str, str], output: Path) -> int:
    """Execute the demo notebook in a kernel with `kernel_env`, saying each cell's progress;
    write it as HTML to `output`. 0, or 1 when a cell fails (its error is printed)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from nbconvert import HTMLExporter

    nb = nbformat.read(NOTEBOOK, as_version=4)
    progress = Progress(nb)
    client = NotebookClient(
        nb,
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        on_cell_start=progress.start,
        on_cell_executed=progress.done,
    )
    started = time.monotonic()
    try:
        client.execute(env=kernel_env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        sys.stderr.write(f"a cell failed:\n{exc}\n")
        return 1
    html, _ = HTMLExporter().from_notebook_node(nb)
    output.write_text(html, encoding="utf-8")
    print(f"ran {progress.total} cells in {time.monotonic() - started:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", type=Path, default=NOTEBOOK.with_suffix(".html"), help="the HTML to write"
    )
    args = parser.parse_args(argv)
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
            print(f"proxy ready at {url}rsql/; running {NOTEBOOK.name} headless", flush=True)
            # batch runs record answers for replay (the notebook's last section shows them); the
            # demo records into its own temporary folder, so each run asks the proxy afresh and
            # no answer of the weak local model is replayed once keys are configured
            kernel_env.setdefault("RSQL_REPLAY_FILE", str(work / "replay.jsonl"))
            code = run_notebook(kernel_env, args.output)
    except RuntimeError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    if code == 0:
        print(f"wrote {args.output}")
    return code


if __name__ == "__main__":
    sys.exit(main())
