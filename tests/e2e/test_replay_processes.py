"""The replay store across processes: two writer processes append to one file at once without
losing or mixing lines, and the `python -m rsql_magic.replay_cli` command lists, shows and prunes a
file. The store in one process: tests/unit/test_replay.py."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

from rsql_magic.replay import ReplayStore
from tests.helpers import REPO
from tests.helpers.replay import entry


def _writer(path: str, who: int, n: int) -> None:
    store = ReplayStore(path)
    for i in range(n):
        store.append(entry(who * 10_000 + i))


def test_two_processes_append_at_once_without_losing_or_mixing_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 300)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 600
    assert all(json.loads(line)["text"].startswith("answer ") for line in lines)
    assert len(ReplayStore(path).latest()) == 600


def test_cli_lists_shows_and_prunes(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    store = ReplayStore(path)
    for i in range(3):
        e = entry(i, f"2026-01-0{i + 1}T00:00:00Z")
        e.question, e.cell = f"question {i}", f"cell In [{i}] `%%ask`"
        store.append(e)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "rsql_magic.replay_cli", "--file", str(path), *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )

    out = cli("list")
    assert out.returncode == 0 and out.stdout.count("\n") == 3 and "question 2" in out.stdout
    out = cli("show", f"{2:032x}")
    assert out.returncode == 0 and json.loads(out.stdout)["question"] == "question 2"
    assert cli("show", "ffff").returncode == 1
    out = cli("prune", "--keep-last", "2")
    assert out.returncode == 0 and "removed 1 line(s); 2 answer(s) kept" in out.stdout
    assert [e.question for e in store.entries()] == ["question 1", "question 2"]


def _replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rsql_magic.replay_cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_file_goes_after_the_command_too_and_a_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    store = ReplayStore(path)
    for i in range(2):
        store.append(entry(i, f"2026-01-0{i + 1}T00:00:00Z"))
    out = _replay("list", "--file", str(path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 2 and f"2 answers in {path}" in out.stderr
    out = _replay("show", f"{1:032x}", "--file", str(path))
    assert out.returncode == 0 and json.loads(out.stdout)["fp"] == f"{1:032x}"
    out = _replay("prune", "--dry-run", "--file", str(path))
    assert out.returncode == 0 and "would remove 0 line(s)" in out.stdout, out.stderr

    missing = tmp_path / "nowhere.jsonl"
    for args in (["list"], ["show", "ab"], ["prune", "--keep-last", "1"]):
        for where in (["--file", str(missing), *args], [*args, "--file", str(missing)]):
            out = _replay(*where)
            assert out.returncode == 2, (where, out.stdout, out.stderr)
            assert f"rsql-replay: no replay file at {missing} (--file)" in out.stderr, out.stderr
            assert "0 answer" not in out.stderr + out.stdout and "Traceback" not in out.stderr
    assert not missing.exists()  # prune did not create it


def test_a_replay_file_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "answers.jsonl"
    folder.mkdir()
    out = _replay("--file", str(folder), "list")
    assert out.returncode == 2, out.stderr
    assert f"rsql-replay: the replay file {folder} is not a regular file" in out.stderr
    assert "0 answer" not in out.stderr and "Traceback" not in out.stderr
