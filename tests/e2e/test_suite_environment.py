"""The suite passes whatever the caller's shell holds (#40): variables the project reads are
cleared before any server or kernel is started, so they cannot change what the tests see."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import os
import tests.conftest  # what pytest loads before any test
leaked = sorted(k for k in os.environ if k.startswith(("RSQL_", "JUPYTERHUB_", "OPENAI_"))
                and not k.startswith("RSQL_TEST_") and k != "RSQL_CACHE_DIR")
print(",".join(leaked))
print(os.environ.get("RSQL_TEST_SERVICES", ""))
print(os.environ.get("RSQL_CACHE_DIR", ""))
"""


def test_a_shells_rsql_settings_and_keys_never_reach_what_the_tests_start() -> None:
    env = {
        **os.environ,
        "RSQL_REPLAY_FILE": "/tmp/someone-elses-replay.jsonl",
        "RSQL_PROXY_URL": "http://127.0.0.1:9/rsql/",
        "RSQL_MODEL": "gpt-from-my-shell",
        "JUPYTERHUB_API_TOKEN": "hub-token-of-my-shell",
        "OPENAI_API_KEY": "sk-my-own-key",
        "RSQL_CACHE_DIR": "/tmp/my-own-cache",
        "RSQL_TEST_SERVICES": "private",  # the suite's own settings stay
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert out[0] == ""  # nothing of the shell's left for a server or kernel to inherit
    assert out[1] == "private"
    # the value index's folder is the suite's own, a new empty one, never the shell's
    assert out[2] != "/tmp/my-own-cache" and Path(out[2]).name.startswith("rsql-test-cache-")
