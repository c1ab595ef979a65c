"""Record the answers the documentation's demo page replays (``make docs-record``).

Runs ``notebooks/demo.ipynb`` headless through the proxy, as ``make demo`` does (the proxy is
configured from ./rsql_config.py when it exists, else the local SmolLM2-135M model answers), in
the kernel environment every build of the site uses (``docs/_ext/rsql_demo_env.py``), and
records every answer into a fresh file. Only when the whole run succeeds does that file
replace ``docs/_data/demo-replay.jsonl``; commit it with the change that needed it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import rsql_demo_env  # noqa: E402 (found through the path above)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="rsql-docs-record-"))
    fresh = work / "demo-replay.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in rsql_demo_env.UNSET}
    # "auto" on an empty file: every question is asked once and recorded
    env.update(rsql_demo_env.kernel_env("auto", fresh))
    try:
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_demo.py")], env=env)
        if done.returncode != 0 or not fresh.exists():
            sys.stderr.write("the demo run failed: the recorded answers were left unchanged\n")
            return done.returncode or 1
        shutil.copyfile(fresh, rsql_demo_env.REPLAY_FILE)
        rsql_demo_env.REPLAY_FILE.chmod(0o644)  # recorded owner-only; committed, it is public
        count = sum(1 for line in fresh.read_text().splitlines() if line.strip())
        print(f"recorded {count} answers into {rsql_demo_env.REPLAY_FILE.relative_to(ROOT)}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
