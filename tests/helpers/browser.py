"""JupyterLab (and Notebook 7) on loopback for headless Chromium, with the proxy in front of the
fake provider."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import REPO, free_port, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import KERNELS_ON_SOCKETS, short_runtime_dir

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"  # browser tests' screenshots
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def start_lab(
    tmp: Path, fp: FakeProvider, proxy_config: dict[str, Any] | None = None
) -> tuple[subprocess.Popen, str, str, Path]:
    """A full `jupyter lab` serving the proxy: (process, url, token, root folder);
    `proxy_config`: more `c.RSQLProxy.<k> = <v>` settings (a module's policy windows)."""
    port, token = free_port(), secrets.token_hex(16)
    cfg = tmp / "jupyter_server_config.py"
    extra = "".join(f"c.RSQLProxy.{k} = {v!r}\n" for k, v in (proxy_config or {}).items())
    cfg.write_text(
        "c.ServerApp.jpserver_extensions = {'jupyter_server_ext': True, 'jupyterlab': True, "
        "'notebook': True, 'jupyter_lsp': False, 'jupysql_plugin': False}\n"
        f"{KERNELS_ON_SOCKETS}\n"
        f"c.RSQLProxy.upstreams = {upstreams_for(fp)!r}\n"
        "c.RSQLProxy.default_model = 'fake-small'\n"
        "c.RSQLProxy.user_limits = ['100/day']\n"
        "c.RSQLProxy.user_daily_budget_usd = 2.0\n"
        "c.RSQLProxy.unpriced_models = 'free'\n"  # the fake provider's models have no price
        # no internet here: no news or update checks from the lab frontend
        "c.LabApp.news_url = None\n"
        "c.LabApp.check_for_updates_class = "
        "'jupyterlab.handlers.announcements.NeverCheckForUpdate'\n" + extra
    )
    root = tmp / "root"
    root.mkdir()
    # no "get official Jupyter news?" toast over the panel (user settings of this lab only)
    note = (
        tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    )
    note.parent.mkdir(parents=True)
    note.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    # a notebook opens with its own kernel started, without the "Select Kernel" dialog that
    # JupyterLab shows when other kernels run (a lab shared by a module's tests): a user's
    # "Always start the preferred kernel"
    tracker = (
        tmp / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    )
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"autoStartDefaultKernel": true}')
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RSQL_", "JUPYTERHUB_", "JPY_")) and not k.endswith("_API_KEY")
    }
    env.update(
        JUPYTER_RUNTIME_DIR=short_runtime_dir(),
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    )
    log = tmp / "lab.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            "--allow-root",
            f"--config={cfg}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}api/status?token={token}", timeout=2):
                break
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                proc.terminate()
                raise RuntimeError(
                    f"jupyter lab did not start:\n{log.read_text(errors='replace')}"
                ) from None
            time.sleep(0.3)
    return proc, url, token, root


@contextmanager
def running_lab(
    tmp: Path, fp: FakeProvider, proxy_config: dict[str, Any] | None = None
) -> Iterator[tuple[str, str, Path]]:
    """:func:`start_lab` as a context: (url, token, root), the lab stopped on leaving. A module
    shares one (a lab takes seconds to start); each test opens its notebook with
    :func:`notebook_address`."""
    proc, url, token, root = start_lab(tmp, fp, proxy_config)
    try:
        yield url, token, root
    finally:
        stop(proc)


def notebook_address(url: str, token: str, notebook: str, frontend: str = "lab") -> str:
    """The page of `notebook` in JupyterLab (``frontend="lab"``) or Notebook 7. In JupyterLab,
    a workspace of the notebook's own, reset: the page opens that notebook alone, not whatever
    earlier tests left open in the shared lab's default workspace."""
    if frontend == "notebook":
        return f"{url}notebooks/{notebook}?token={token}"
    return f"{url}lab/workspaces/{Path(notebook).stem}/tree/{notebook}?reset&token={token}"


@contextmanager
def chromium_process() -> Iterator[Any]:
    """Playwright's driver and Debian's Chromium, headless: the Browser, closed on leaving
    (a test's, the `chromium_browser` fixture); a test opens fresh profiles in it
    (:func:`chromium`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def chromium(browser: Any, height: int = 900) -> Any:
    """A fresh profile in `browser` (a Playwright context: cookies, storage, cache and
    permissions of its own, as a new --user-data-dir has): close it when done."""
    return browser.new_context(viewport={"width": 1280, "height": height})


@contextmanager
def notebook_page(browser: Any, address: str, shot: str, *, height: int = 1000) -> Iterator[Any]:
    """A page of a fresh profile on `address`, its notebook's kernel up; afterwards a
    screenshot in test-artifacts/ (`shot`.png), or on a failure `shot`-failure.png and the
    browser console's last lines printed with it."""
    context = chromium(browser, height)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    try:
        open_notebook(page, address)
        yield page
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{shot}.png"))
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{shot}-failure.png"))
        print("browser console:", *console[-40:], sep="\n  ")  # shown with the failure
        raise
    finally:
        context.close()


KERNEL_DIALOG = ".jp-Dialog button.jp-mod-accept"
# "ready": the notebook's kernel is up: its execution indicator says idle *and* the toolbar
# names a kernel (the indicator says idle first, while the toolbar still says "No Kernel", and a
# cell run then is lost); "dialog": the page asks which kernel to start
KERNEL_READY = f"""() => {{
  if (document.querySelector({KERNEL_DIALOG!r})) return 'dialog';
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const name = document.querySelector('.jp-KernelName, .jp-Toolbar-kernelName');
  const kernel = name ? name.textContent.trim() : '';
  return !!indicator && indicator.getAttribute('data-status') === 'idle'
    && kernel !== '' && kernel !== 'No Kernel' ? 'ready' : false;
}}"""


def open_notebook(page: Any, address: str) -> None:
    """Open a notebook page and wait until its kernel is up (accepting the kernel dialog, should
    the page still ask), on the page's own signals: no fixed wait."""
    page.goto(address, timeout=60_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=60_000)
    state = page.wait_for_function(KERNEL_READY, timeout=60_000).json_value()
    if state == "dialog":  # asked which kernel to start: the notebook's own one
        page.locator(KERNEL_DIALOG).click()
        page.wait_for_function(f"() => ({KERNEL_READY})() === 'ready'", timeout=60_000)


CELLS = ".jp-Notebook .jp-Cell"
# what cell `index` shows: its prompt ("[ ]:" never run, "[*]:" running, "[3]:" run third), the
# kernel's status and the text of its outputs
CELL_STATE = f"""(index) => {{
  const cell = document.querySelectorAll({CELLS!r})[index];
  const prompt = cell && cell.querySelector('.jp-InputPrompt');
  const outputs = cell ? [...cell.querySelectorAll('.jp-OutputArea-output')] : [];
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  return {{prompt: prompt ? prompt.textContent.trim() : null,
          kernel: indicator ? indicator.getAttribute('data-status') : null,
          outputs: outputs.map(o => o.textContent.slice(0, 600))}};
}}"""
# the cell's run began since its prompt read `before` (running, or run already)
STARTED = f"""([index, before]) => {{
  const p = ({CELL_STATE})(index).prompt;
  return !!p && p !== before && p !== '[ ]:';
}}"""
# the cell's run ended since its prompt read `before`: it shows a new number
RAN = f"""([index, before]) => {{
  const p = ({CELL_STATE})(index).prompt;
  return !!p && p !== before && /^\\[\\d+\\]:$/.test(p);
}}"""


def run_cell(
    page: Any, index: int, *, key: str = "Control+Enter", wait: bool = True, seconds: float = 60
) -> Any:
    """Run cell `index` of the open notebook: its editor clicked, `key` pressed (Control+Enter
    runs it in place, Shift+Enter moves on). With `wait`, until it has run: its prompt shows a
    new number, not merely no ``[*]`` (a press that reached no cell leaves that too). A press
    that started no run in 15 s is pressed once more. A failure says the cell's prompt, the
    kernel's status and the cell's outputs. The cell's locator."""
    cell = page.locator(CELLS).nth(index)
    before = page.evaluate(CELL_STATE, index)["prompt"]
    cell.locator(".cm-content").click()
    page.keyboard.press(key)
    if not wait:
        return cell
    try:
        page.wait_for_function(STARTED, arg=[index, before], timeout=15_000)
    except Exception:
        # the page may still move its focus just after it opens (a cell it renders late), and
        # a key pressed then goes elsewhere: a user would press it again, so once may the test
        print(f"cell {index}'s run did not start in 15 s; {key} once more")
        cell.locator(".cm-content").click()
        page.keyboard.press(key)
    for step, wait_js, timeout in (("start", STARTED, 30), ("end", RAN, seconds)):
        try:
            page.wait_for_function(wait_js, arg=[index, before], timeout=timeout * 1000)
        except Exception as e:
            state = page.evaluate(CELL_STATE, index)
            raise AssertionError(
                f"cell {index}'s run did not {step} in {timeout} s: {state}"
            ) from e
    return cell


def open_chat_panel(page: Any, root: Path) -> tuple[Any, Any]:
    """Run the open notebook's first cell (it ends in ``%ask_chat``, :func:`run_cell`) and wait
    for the chat panel: (the panel, its question box). A failure names the step that did not
    happen (the run's start or end, the panel), with the cell's prompt and outputs and the end
    of the log of the lab serving `root` (:func:`start_lab`)."""
    try:
        run_cell(page, 0, key="Shift+Enter")
        page.wait_for_function("() => !!document.querySelector('.rsql-chat')", timeout=30_000)
    except Exception as e:
        log = (root.parent / "lab.log").read_text(errors="replace").splitlines()[-40:]
        raise AssertionError(
            f"no chat panel: {e}; the first cell: {page.evaluate(CELL_STATE, 0)}; "
            "the lab's log ends:\n" + "\n".join(log)
        ) from e
    panel = page.wait_for_selector(".rsql-chat", timeout=30_000)
    return panel, panel.wait_for_selector("input[placeholder^='Ask about your data']")


def write_notebook(root: Path, name: str, cells: list[str]) -> None:
    """A notebook of code `cells` on the Python 3 kernel, at `root / name`, for a browser to open."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, root / name)


def stop(proc: subprocess.Popen) -> None:
    """Stop a server started by :func:`start_lab`, killing it if it does not stop in 20 s."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
