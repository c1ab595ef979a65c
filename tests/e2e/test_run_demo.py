"""`make demo` (scripts/run_demo.py) as a newcomer runs it: a real Jupyter server with the proxy,
the demo notebook in a real kernel, and a line per cell while it runs, not minutes of silence."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_ask_demo import REPLIES
from tests.helpers import REPO, child_env, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import require_r

pytestmark = pytest.mark.slow


def test_the_demo_says_each_cells_progress_and_writes_where_it_is_told(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    require_r()
    fresh_provider.script(*REPLIES)
    config = tmp_path / "rsql_config.py"
    config.write_text(
        f"c.RSQLProxy.upstreams = {upstreams_for(fresh_provider)!r}\n"
        'c.RSQLProxy.default_model = "fake-small"\n'
    )
    tracked = REPO / "notebooks" / "demo.html"
    before = tracked.stat().st_mtime_ns if tracked.exists() else None
    out = tmp_path / "demo.html"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_demo.py"), "--output", str(out)],
        env=child_env(RSQL_CONFIG=str(config)),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    nb = json.loads((REPO / "notebooks" / "demo.ipynb").read_text())
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    total = len(sources)
    lines = done.stdout.splitlines()
    started = [ln for ln in lines if re.fullmatch(rf"cell \d+ of {total}: (?!done in ).+", ln)]
    ended = [ln for ln in lines if re.fullmatch(rf"cell \d+ of {total}: done in \d+\.\d s", ln)]
    # every code cell, in order, named by its first line, each with its time
    shown = [ln.split(": ", 1)[1] for ln in started]
    assert len(shown) == total
    for said, source in zip(shown, sources, strict=True):
        assert source.strip().splitlines()[0].startswith(said.removesuffix("…")), (said, source)
    assert [int(ln.split()[1]) for ln in ended] == list(range(1, total + 1))
    assert lines.index(started[0]) < lines.index(ended[0]) < lines.index(started[1])
    # through the proxy the file configured, answered by its provider: the scripted answers'
    # own words are in the page (the notebook's sources hold neither)
    assert f"proxy configured from {config}" in done.stdout, done.stdout[-2000:]
    page = out.read_text()
    assert "has the highest total" in page and "not <code>regoin</code>" in page, page[-2000:]
    assert len(fresh_provider.received) == len(REPLIES), len(fresh_provider.received)  # each asked
    # the checkout's own copy is left alone when told to write elsewhere
    assert (tracked.stat().st_mtime_ns if tracked.exists() else None) == before
