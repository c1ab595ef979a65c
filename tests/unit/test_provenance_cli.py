"""rsql-provenance (rsql_magic/provenance/cli.py) through its command line, against a proxy that
speaks issue 75's contract for ``POST course/requests`` (tests/helpers/course_proxy.py): the
instructor tells an honest mark from what a student would try (a made-up request id, another
student's id, an id of another notebook, a mark edited by hand), the text and JSON outputs,
and the exit codes of a refused or unreachable proxy. Its twin against the real proxy:
tests/e2e/test_provenance_proxy.py."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import nbformat
import pytest

from rsql_magic.provenance.cli import main
from tests.helpers import free_port
from tests.helpers.course_proxy import CourseProxy, ServedRequest
from tests.unit.test_provenance_marks import mark_for

ALICE_ASK = "a1" * 16
ALICE_SQL = "a2" * 16
BOB_ASK = "b1" * 16
OTHER_NB = "c1" * 16


@pytest.fixture
def proxy() -> Iterator[CourseProxy]:
    served = {
        ALICE_ASK: ServedRequest(
            "alice", "hw/hw1.ipynb", "c-ask", "fake-small", "2026-11-23T10:00:00Z"
        ),
        ALICE_SQL: ServedRequest(
            "alice", "hw/hw1.ipynb", "c-sql", "fake-small", "2026-11-23T10:02:00Z"
        ),
        BOB_ASK: ServedRequest("bob", "hw/hw1.ipynb", "c-x", "fake-small", "2026-11-23T09:00:00Z"),
        OTHER_NB: ServedRequest(
            "alice", "hw/hw2.ipynb", "c-y", "fake-small", "2026-11-23T09:30:00Z"
        ),
    }
    # the instructor reads alice's and bob's requests; a student's token reads none
    with CourseProxy(served=served, readers={"tok-staff": {"alice", "bob"}}) as p:
        yield p


def notebook(tmp_path: Path, marked: list[tuple[str, dict[str, Any]]], plain: int = 1) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"mine_{i} = {i}") for i in range(plain)]
    for source, mark in marked:
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"rsql": {"provenance": mark}}))
    path = tmp_path / "hw1.ipynb"
    nbformat.write(nb, path)
    return path


def cli(
    *args: str, token: str | None = "tok-staff", url: str | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"RSQL_PROXY_TOKEN": token} if token else {}
    if url:
        env["RSQL_PROXY_URL"] = url
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args), env=env)
    return code, out.getvalue(), err.getvalue()


def test_honest_marks_are_listed_with_the_share_and_check_out_at_the_proxy(
    proxy: CourseProxy, tmp_path: Path
) -> None:
    path = notebook(
        tmp_path,
        [
            (
                "df.groupby('region').revenue.sum()",
                mark_for("df.groupby('region').revenue.sum()", rid=ALICE_ASK),
            ),
            ("SELECT 1\nFROM t", mark_for("SELECT 1\nFROM t", kind="sql_ai", rid=ALICE_SQL)),
        ],
        plain=2,
    )
    code, out, err = cli(str(path))
    assert code == 0, err
    assert "2 of 4 code cells assisted; 3 of 5 code lines (60%)" in out
    code, out, err = cli(str(path), "--check", "--user", "alice", url=proxy.url)
    assert code == 0, out + err
    assert out.count("ok: served to alice for hw/hw1.ipynb") == 2 and "PROBLEM" not in out
    code, out, _ = cli(str(path), "--check", "--json", url=proxy.url)
    report = json.loads(out)
    assert report["share"] == 0.6 and report["assisted_cells"] == 2
    assert [c["check"]["ok"] for c in report["cells"]] == [True, True]
    assert report["cells"][0]["check"]["served"][0]["user"] == "alice"


def test_a_made_up_id_another_students_id_and_another_notebooks_are_told_apart(
    proxy: CourseProxy, tmp_path: Path
) -> None:
    """What a student would try: marks whose request ids the proxy never served to them here."""
    made_up = "f" * 32
    path = notebook(
        tmp_path,
        [
            ("a = 1", mark_for("a = 1", rid=ALICE_ASK)),
            ("b = 2", mark_for("b = 2", rid=made_up)),
            ("c = 3", mark_for("c = 3", rid=BOB_ASK)),
            ("d = 4", mark_for("d = 4", rid=OTHER_NB)),
        ],
    )
    code, out, _ = cli(str(path), "--check", "--json", url=proxy.url)
    assert code == 1
    cells = json.loads(out)["cells"]
    assert cells[0]["check"]["ok"]
    assert "knows no such request" in cells[1]["check"]["problems"][0]
    # no --user: whose notebook it is follows from its other requests (alice's)
    assert "another user (bob), not alice" in cells[2]["check"]["problems"][0]
    assert "another notebook (hw/hw2.ipynb)" in cells[3]["check"]["problems"][0]


def test_a_mark_edited_by_hand_is_caught_by_its_own_fingerprints_model_and_time(
    proxy: CourseProxy, tmp_path: Path
) -> None:
    """The student lowers the count of assistant lines, names another model, or moves the time
    before the answer: the recount and the proxy's record disagree with the mark."""
    source = "x = load()\ny = x.mean()\nprint(y)"
    fewer = mark_for(source, rid=ALICE_ASK, assistant_lines=0)
    other_model = mark_for("q = 1", rid=ALICE_SQL, model="my-own-brain")
    early = mark_for("r = 2", rid=ALICE_ASK, time="2026-11-23T08:00:00Z")
    path = notebook(tmp_path, [(source, fewer), ("q = 1", other_model), ("r = 2", early)])
    code, out, _ = cli(str(path), "--check", url=proxy.url)
    assert code == 1
    assert (
        "PROBLEM: the mark says 0 of 3 lines are the assistant's, its own fingerprints find 3 of 3"
        in out
    )
    assert "the mark says model my-own-brain, the proxy served fake-small" in out
    assert "before the answer (2026-11-23T10:00:00Z)" in out
    # the share counts the recount, never the mark's word: 5 of the 6 lines
    assert "3 of 4 code cells assisted; 5 of 6 code lines (83%)" in out.splitlines()[0]


def test_a_model_is_the_same_only_as_its_dated_snapshot(proxy: CourseProxy, tmp_path: Path) -> None:
    """One name inside the other passed for the same model, so a mark edited from the model
    served to a shorter name (``fake`` for ``fake-small``, ``gpt-4o`` for ``gpt-4o-mini``)
    passed the check. Only a dated snapshot of the model served is the same model."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shorter = notebook(tmp_path / "a", [("q = 1", mark_for("q = 1", rid=ALICE_SQL, model="fake"))])
    code, out, _ = cli(str(shorter), "--check", url=proxy.url)
    assert code == 1 and "the mark says model fake, the proxy served fake-small" in out
    dated = mark_for("q = 1", rid=ALICE_SQL, model="fake-small-2026-11-01")
    code, out, _ = cli(str(notebook(tmp_path / "b", [("q = 1", dated)])), "--check", url=proxy.url)
    assert code == 0 and "PROBLEM" not in out, out


def test_a_student_token_an_unreachable_proxy_and_no_proxy_end_with_their_exit_codes(
    proxy: CourseProxy, tmp_path: Path
) -> None:
    path = notebook(tmp_path, [("a = 1", mark_for("a = 1", rid=ALICE_ASK))])
    code, _, err = cli(str(path), "--check", token="tok-alice", url=proxy.url)
    assert code == 5 and "403" in err and "instructor" in err
    code, _, err = cli(str(path), "--check", url=f"http://127.0.0.1:{free_port()}/")
    assert code == 3 and "cannot reach the proxy" in err
    code, _, err = cli(str(path), "--check")
    assert code == 2 and "--url" in err
    code, out, _ = cli(str(path))  # listing needs no proxy
    assert code == 0 and "1 of 2 code cells assisted" in out


def test_what_a_notebook_and_the_proxy_say_reaches_the_terminal_as_text(
    proxy: CourseProxy, tmp_path: Path
) -> None:
    hostile = "\x1b]52;c;cm0gLXJmIH4=\x07\u202egpt\x1b[2K"
    proxy.served[ALICE_ASK].notebook = f"hw/hw1.ipynb{hostile}"
    path = notebook(tmp_path, [("a = 1", mark_for("a = 1", rid=ALICE_ASK, model=hostile))])
    _, out, _ = cli(str(path), "--check", url=proxy.url)
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b]52" in out and "\\u202e" in out


def test_where_the_proxy_keeps_notebooks_as_hashes_another_notebooks_request_still_shows(
    proxy: CourseProxy, tmp_path: Path
) -> None:
    """An admin reading the usage log (c.RSQLProxy.notebook_names off) sees keyed hashes, not
    paths: the notebook's own hash is the one most of its requests have."""
    ours, theirs = "nb-" + "1" * 16, "nb-" + "2" * 16
    for rid in (ALICE_ASK, ALICE_SQL):
        proxy.served[rid].notebook = ours
    proxy.served[OTHER_NB].notebook = theirs
    path = notebook(
        tmp_path,
        [
            ("a = 1", mark_for("a = 1", rid=ALICE_ASK)),
            ("b = 2", mark_for("b = 2", rid=ALICE_SQL)),
            ("c = 3", mark_for("c = 3", rid=OTHER_NB)),
        ],
    )
    code, out, _ = cli(str(path), "--check", "--json", url=proxy.url)
    cells = json.loads(out)["cells"]
    assert code == 1 and [c["check"]["ok"] for c in cells] == [True, True, False]
    assert f"another notebook ({theirs})" in cells[2]["check"]["problems"][0]
