"""rsql-provenance against the real proxy and its course log: students' kernels ask, the
proxy serves and logs; an instructor checks a collected notebook whose marks name those
requests, as the frontend writes them (the kernel's payload: kind, model, request id). A
made-up id, another student's id and an id of another notebook are told apart from honest
marks; a student's own token may not check; the command runs as an instructor would run it,
a process of its own. Its unit twin: tests/unit/test_provenance_cli.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.helpers import REPO, child_env, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernel_driver import KernelDriver
from tests.helpers.kernels import kernel_env
from tests.helpers.servers import JupyterServer, start_jupyter_server
from tests.unit.test_provenance_marks import mark_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def course(
    provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    server = start_jupyter_server(
        tmp_path_factory.mktemp("provenance-proxy"),
        {
            "upstreams": upstreams_for(provider),
            "default_model": "fake-small",
            "course_logs": {"students": {"instructors": "staff", "retention_days": 30}},
        },
        named_users=True,
    )
    yield server
    server.stop()


def inserted(
    server: JupyterServer, token: str, notebook: str, tmp: Path, fp: FakeProvider
) -> dict[str, Any]:
    """A student's %%ask --insert in a kernel of theirs for `notebook`: the provenance the
    kernel sent the frontend with set_next_input."""
    k = KernelDriver(kernel_env(server.proxy_url, token), tmp)
    try:
        k.run(
            f"%load_ext rsql_magic\n%config RSQLMagic.stream = False\n%config RSQLMagic.notebook = {notebook!r}"
        )
        fp.script("```python\nx = 1\n```")
        reply, _ = k.run(f"%%ask --no-data --insert\nsomething for {token} in {notebook}")
    finally:
        k.close()
    (ours,) = [p for p in reply["payload"] if p["source"] == "rsql_provenance"]
    return ours["provenance"]


def check(path: Path, server: JupyterServer, token: str) -> tuple[int, Any, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "rsql_magic.provenance.cli", str(path), "--check", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=child_env(RSQL_PROXY_URL=server.proxy_url, RSQL_PROXY_TOKEN=token),
    )
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None, proc.stderr


def test_an_instructor_tells_honest_marks_from_made_up_copied_and_misplaced_ones(
    course: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    honest = inserted(course, "tok-alice", "hw/hw1.ipynb", tmp_path, fresh_provider)
    bobs = inserted(course, "tok-bob", "hw/hw1.ipynb", tmp_path, fresh_provider)
    elsewhere = inserted(course, "tok-alice", "hw/hw2.ipynb", tmp_path, fresh_provider)
    nb = nbformat.v4.new_notebook()
    now = dt.datetime.now(dt.timezone.utc).isoformat()  # each cell inserted once answered
    marks = [
        mark_for("x = 1", rid=honest["request_id"], model=honest["model"], time=now),
        mark_for("y = 2", rid="0" * 32, time=now),
        mark_for("z = 3", rid=bobs["request_id"], model=bobs["model"], time=now),
        mark_for("w = 4", rid=elsewhere["request_id"], model=elsewhere["model"], time=now),
    ]
    nb.cells = [
        nbformat.v4.new_code_cell(src, metadata={"rsql": {"provenance": m}})
        for src, m in zip(["x = 1", "y = 2", "z = 3", "w = 4"], marks, strict=True)
    ]
    path = tmp_path / "hw1.ipynb"
    nbformat.write(nb, path)

    code, report, err = check(path, course, "tok-carol")  # carol: staff, the instructors
    assert code == 1, err
    checks = [c["check"] for c in report["cells"]]
    assert checks[0]["ok"] and checks[0]["served"][0]["user"] == "alice", json.dumps(
        report["cells"][0]["check"]
    )
    assert "knows no such request" in checks[1]["problems"][0]
    assert "another user (bob), not alice" in " ".join(checks[2]["problems"])
    assert "another notebook" in " ".join(checks[3]["problems"])

    code, _, err = check(path, course, "tok-alice")  # a student may not check
    assert code == 5 and "403" in err


def test_the_course_pages_grading_loop_holds_each_notebook_to_its_student(
    course: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """docs/admins/courses.md's loop, run as the page gives it (bash, the console script), over
    the folders nbgrader collects: alice's notebook checks out, and bob's, a copy of hers,
    is flagged. Without a --user of its own a copied notebook read "ok: served to alice", and
    the page's earlier command, one --user over every student's notebook, flagged the honest."""
    page = (REPO / "docs" / "admins" / "courses.md").read_text()
    (loop,) = re.findall(r"```bash\n(for folder in submitted/.*?)```", page, re.S)
    honest = inserted(course, "tok-alice", "hw/hw1.ipynb", tmp_path, fresh_provider)
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    mark = mark_for("x = 1", rid=honest["request_id"], model=honest["model"], time=now)
    for student in ("alice", "bob"):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"rsql": {"provenance": mark}})]
        (tmp_path / "submitted" / student).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "submitted" / student / "hw1.ipynb")
    env = child_env(RSQL_PROXY_URL=course.proxy_url, RSQL_PROXY_TOKEN="tok-carol")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", "-c", loop], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    alice, _, bob = proc.stdout.partition("submitted/bob/")
    assert "ok: served to alice" in alice and "PROBLEM" not in alice, proc.stdout + proc.stderr
    assert "PROBLEM" in bob and "another user (alice), not bob" in bob, proc.stdout
