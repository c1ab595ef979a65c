"""The environment the demo notebook runs in for this site: when its answers are recorded
(``make docs-record``) and when every build replays them (``docs/conf.py``).

A replayed answer is found by a fingerprint of everything the model was shown, so both runs
must show the model the same thing on any machine. Two things would otherwise differ:

- a personal IPython profile could set ``RSQLMagic.*`` (a model, a context policy), and a
  running Jupyter server or exported keys could be picked up as the proxy: the kernel gets a
  profile of its own, an empty runtime folder and none of those variables;
- the traceback that goes with "why does this fail?" names the files of the installed pandas
  (the checkout's path, the version's line numbers): the kernel keeps only the traceback's first
  frame, the notebook's own cell, whose name the fingerprint already ignores.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent
REPLAY_FILE = DOCS / "_data" / "demo-replay.jsonl"

# variables that would point the kernel at a proxy, a model or keys of the machine
UNSET = (
    "RSQL_PROXY_URL",
    "RSQL_PROXY_TOKEN",
    "JUPYTERHUB_API_TOKEN",
    "RSQL_MODEL",
    "RSQL_UPSTREAMS",
    "RSQL_NOTEBOOK",
    "RSQL_BATCH",
    "GROQ_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
)

# run before the notebook's first cell; no name is left in the user's namespace
PROFILE = """\
c = get_config()  # noqa: F821 (IPython's config loader)
c.InteractiveShellApp.exec_lines = ["__import__('sys').tracebacklimit = 1"]
"""


def kernel_env(replay: str, replay_file: Path = REPLAY_FILE) -> dict[str, str]:
    """Variables for the kernel: replay mode and file, its own IPython profile and runtime
    folder (fresh temporary folders). Remove :data:`UNSET` from the environment as well."""
    work = Path(tempfile.mkdtemp(prefix="rsql-docs-"))
    atexit.register(shutil.rmtree, work, True)  # removed when the build (or recording) ends
    profile = work / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text(PROFILE)
    return {
        "RSQL_REPLAY": replay,
        "RSQL_REPLAY_FILE": str(replay_file),
        "RSQL_LOCAL_MODEL": "off",  # no model either: only the recorded answers
        "IPYTHONDIR": str(work / "ipython"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
    }
