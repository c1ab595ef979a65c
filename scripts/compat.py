"""`make compat`: the AI clients users install, at the versions the registries serve today, run
against a real rsql-proxy with the loopback providers (issue 54).

    .venv/bin/python scripts/compat.py                    # the matrix; writes the docs' table
    .venv/bin/python scripts/compat.py --cli codex=0.130.0  # one CLI version alone, not written

It installs into build/compat/ (never .venv or .tools): the newest Claude Code and Codex from
npm (build/compat/npm), the newest Python clients from PyPI (build/compat/newest, and
build/compat/jupyter-ai for jupyter-ai 3, whose pins would hold the others back), and the oldest
supported Python clients (build/compat/oldest). The oldest and pinned CLIs are the suite's, in
.tools/ (scripts/install-system-deps.sh); the suite's Python clients are .venv's. Each check is
tests/helpers/client_matrix.py's, which tests/e2e/test_client_matrix.py runs in CI on the
pinned and oldest versions.

The table of versions tried and results goes into docs/users/ai-tools.md between the compat
markers. Any failing check (a new version's above all) exits 1, naming the client, the version
and the error line. When it passes, the pins may move forward (docs/users/ai-tools.md).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Set
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.client_matrix import (  # noqa: E402
    ANTHROPIC_KEY,
    CLAUDE_MODEL,
    GATEWAY_MODEL,
    Outcome,
    answer_matrix_requests,
    claude_code,
    codex,
    error_line,
    hub_environment,
    make_shop,
    mcp_environment,
    node_cli,
    package_version,
    run_script,
    script_checks,
    start_matrix_service,
)
from tests.helpers.fake_anthropic import FakeAnthropic  # noqa: E402
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey  # noqa: E402
from tests.helpers.fake_provider import FakeProvider, KeyPolicy  # noqa: E402

BUILD = ROOT / "build" / "compat"
TOOLS = ROOT / ".tools"
DOC = ROOT / "docs" / "users" / "ai-tools.md"
START, END = "<!-- compat -->", "<!-- /compat -->"

# the npm packages: (row name, package, the suite's alias of its oldest supported version)
CLIS = {
    "claude-code": ("Claude Code", "@anthropic-ai/claude-code", "claude-code-oldest"),
    "codex": ("Codex", "@openai/codex", "codex-oldest"),
}
# the oldest supported versions of the Python clients (docs/users/ai-tools.md says why), with
# the httpx they were released against: httpx 0.28 dropped an argument openai < 1.55 passes
OLDEST_PYTHON = ["openai==1.3.0", "anthropic==0.16.0", "httpx<0.28"]
NEWEST_PYTHON = [
    "openai",
    "anthropic",
    "openai-agents",
    "langchain-openai",
    "langchain-anthropic",
    "mcp",
]
JUPYTER_AI = ["jupyter-ai[jupyternaut]"]


@dataclass(frozen=True)
class Row:
    client: str
    version: str
    tried_as: str  # "oldest supported", "pinned", "newest", ...
    check: str
    outcome: Outcome


def say(*parts: object) -> None:
    print("compat:", *parts, flush=True)


def run(argv: list[str], **kw: object) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SystemExit(f"compat: {' '.join(argv[:4])} ... failed:\n{done.stderr[-3000:]}")


# -- installing ------------------------------------------------------------------------------


def npm_latest(package: str) -> str:
    done = subprocess.run(
        ["npm", "view", package, "version"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def npm_install(alias: str, package: str, version: str) -> tuple[list[str], str]:
    """`package`@`version` into build/compat/npm as `alias` (its own folder, so versions of one
    package sit side by side); its command and version."""
    prefix = BUILD / "npm"
    found = node_cli(prefix, alias)
    if found is None or found[1] != version:
        say(f"installing {package}@{version} into {prefix.relative_to(ROOT)}")
        spec = f"{alias}@npm:{package}@{version}"
        run(
            ["npm", "install", "--silent", "--no-fund", "--no-audit", "--save-exact"]
            + ["--prefix", str(prefix), spec]
        )
        found = node_cli(prefix, alias)
    if found is None:
        raise SystemExit(f"compat: {package}@{version} installed no command")
    return found


def venv(name: str, requirements: list[str]) -> str:
    """A fresh venv under build/compat with `requirements` at the newest versions they resolve
    to (upgraded on each run); its python."""
    folder = BUILD / name
    python = folder / "bin" / "python"
    if not python.exists():
        say(f"creating {folder.relative_to(ROOT)}")
        run([sys.executable, "-m", "venv", str(folder)])
    say(f"installing into {folder.relative_to(ROOT)}: {' '.join(requirements)}")
    run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip", *requirements])
    return str(python)


def pypi_latest(python: str, package: str) -> str | None:
    """The newest version PyPI serves (`pip index versions`), or None if pip cannot say."""
    done = subprocess.run(
        [python, "-m", "pip", "index", "versions", package], capture_output=True, text=True
    )
    first = done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else ""
    return first.partition("(")[2].rstrip(")") or None


# -- running ---------------------------------------------------------------------------------


@dataclass
class Matrix:
    provider: FakeProvider
    claude_fake: FakeAnthropic
    proxy_url: str
    tmp: Path
    shop: Path
    rows: list[Row]

    def scratch(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp))

    def cli(self, key: str, command: list[str], version: str, tried_as: str) -> None:
        name = CLIS[key][0]
        tag = f"matrix-{key}-{version}-{tried_as.split()[0]}"
        checks: list[tuple[str, Callable[[], Outcome]]]
        if key == "claude-code":
            checks = [
                (
                    f"`-p`, a Claude model ({CLAUDE_MODEL})",
                    lambda: claude_code(
                        command,
                        self.proxy_url,
                        CLAUDE_MODEL,
                        tag + "-claude",
                        self.claude_fake,
                        self.scratch(),
                    ),
                ),
                (
                    f"`-p`, a gateway's model name ({GATEWAY_MODEL})",
                    lambda: claude_code(
                        command,
                        self.proxy_url,
                        GATEWAY_MODEL,
                        tag + "-gateway",
                        self.claude_fake,
                        self.scratch(),
                    ),
                ),
            ]
        else:
            checks = [
                (
                    "`exec`, the documented configuration",
                    lambda: codex(command, self.proxy_url, tag, self.scratch()),
                )
            ]
        for check, go in checks:
            self.add(Row(name, version, tried_as, check, go()))

    def python(self, python: str, tried_as: str, only: set[str] | None = None) -> None:
        rsql_mcp = str(Path(sys.executable).parent / "rsql-mcp")
        extra = mcp_environment(self.proxy_url, self.shop, rsql_mcp)
        versions: dict[str, str | None] = {}
        for check in script_checks():
            if only is not None and check.package not in only:
                continue
            if check.package not in versions:
                versions[check.package] = package_version(python, check.package)
            version = versions[check.package]
            if version is None:
                continue  # not installed in this environment: not a version tried
            outcome = run_script(check, python, self.proxy_url, self.scratch(), **extra)
            self.add(Row(check.client, version, tried_as, check.what, outcome))

    def add(self, row: Row) -> None:
        mark = {"pass": "ok  ", "fail": "FAIL", "n/a": "n/a "}[row.outcome.result]
        say(f"{mark} {row.client} {row.version} ({row.tried_as}): {row.check}")
        if row.outcome.failed:
            say(f"     {row.outcome.detail}")
        self.rows.append(row)


def run_matrix(
    clis: list[tuple[str, list[str], str, str]],
    pythons: list[tuple[str, str, set[str] | None]],
    r_httr2: bool,
) -> list[Row]:
    """Start the fakes and the proxy, run every check given, stop them; the rows."""
    tmp = Path(tempfile.mkdtemp(prefix="rsql-compat-"))
    keys = {"sk-compat-a1-fake0123456789": KeyPolicy("a1", account="acct-a")}
    with (
        FakeProvider(keys) as provider,
        FakeAnthropic({ANTHROPIC_KEY: AnthropicKey("claude")}) as claude_fake,
    ):
        answer_matrix_requests(provider)
        shop = make_shop(tmp / "db")
        svc = start_matrix_service(tmp / "proxy", provider, claude_fake, shop)
        try:
            matrix = Matrix(provider, claude_fake, svc.url, tmp, shop, [])
            for key, command, version, tried_as in clis:
                matrix.cli(key, command, version, tried_as)
            for python, tried_as, only in pythons:
                matrix.python(python, tried_as, only)
            if r_httr2:
                matrix.add(r_httr2_row(svc.url, matrix.scratch()))
        finally:
            svc.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    return matrix.rows


R_HTTR2 = """
library(httr2)
answer <- request(paste0(Sys.getenv("OPENAI_BASE_URL"), "/chat/completions")) |>
  req_auth_bearer_token(Sys.getenv("OPENAI_API_KEY")) |>
  req_body_json(list(model = "fake-small",
                     messages = list(list(role = "user", content = "matrix-r-httr2")))) |>
  req_perform() |> resp_body_json()
cat(answer$choices[[1]]$message$content, "\\n")
"""


def r_httr2_row(proxy_url: str, tmp: Path) -> Row:
    version = subprocess.run(
        ["Rscript", "-e", 'cat(as.character(packageVersion("httr2")))'],
        capture_output=True,
        text=True,
    ).stdout.strip()
    env = hub_environment(proxy_url, tmp / "home")
    done = subprocess.run(
        ["Rscript", "-e", R_HTTR2], env=env, capture_output=True, text=True, timeout=120
    )
    ok = done.returncode == 0 and "matrix-r-httr2" in done.stdout
    detail = done.stdout.strip() if ok else error_line(done.stderr + done.stdout)
    outcome = Outcome("pass" if ok else "fail", detail)
    return Row("R httr2 (Debian's)", version or "?", "pinned", "Chat Completions", outcome)


# -- the table -------------------------------------------------------------------------------


ROLES = ("oldest supported", "pinned", "newest", "tried")


def cell(row: Row | None) -> str:
    if row is None:
        return ""
    result = {"pass": "works", "fail": "**fails**", "n/a": "n/a"}[row.outcome.result]
    if row.outcome.result != "pass":  # the client's own words, as code: nothing in them is markup
        said = row.outcome.detail.replace("`", "'").replace("|", "\\|").replace("\n", " ")
        result += f": `{said[:200]}`"
    return f"{row.version}: {result}"


def table(rows: list[Row], notes: list[str], newest_is_pinned: Set[str] = frozenset()) -> str:
    """One line per client and check, one column per version tried (the pinned column: the
    suite's, in .tools/ and .venv)."""
    roles = [role for role in ROLES if any(r.tried_as == role for r in rows)]
    lines: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        lines.setdefault((r.client, r.check), {})[r.tried_as] = r
    today = datetime.date.today().isoformat()
    out = [
        START,
        f"Run by `make compat` on {today} (scripts/compat.py writes it; a rerun replaces it).",
        "",
        "| client | check | " + " | ".join(roles) + " |",
        "|---|---|" + "---|" * len(roles),
    ]
    for (client, check), tried in lines.items():
        cells = [cell(tried.get(role)) for role in roles]
        if "newest" in roles and "newest" not in tried and client in newest_is_pinned:
            cells[roles.index("newest")] = "the pinned one"
        out.append(f"| {client} | {check} | " + " | ".join(cells) + " |")
    out += ["", *notes, END]
    return "\n".join(out)


NOTES = [
    "Not in the matrix: R's `ellmer` is on CRAN only, which these machines do not reach, and "
    "Debian has no package of it (its set-up is in [Clients outside a notebook](clients.md)). "
    "jupyter-ai's Claude and Codex personas run the ACP adapters `claude-agent-acp` and "
    "`codex-acp`, which bring their own Claude Code and Codex; driven over ACP without a "
    "Jupyter server, neither sent a request to the proxy (claude-agent-acp 0.23.1 closed its "
    "session as it opened it, codex-acp 0.16.0 did not answer), so they are not tried yet.",
]


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"compat: {DOC} has no {START} ... {END} section to write the table in")
    head, rest = doc.split(START, 1)
    DOC.write_text(head + text + rest.split(END, 1)[1])


# -- the run ---------------------------------------------------------------------------------


def suite_clis() -> list[tuple[str, list[str], str, str]]:
    """The oldest supported and the pinned CLIs, as the suite runs them (.tools/)."""
    found = []
    for key, (name, package, oldest) in CLIS.items():
        for folder, tried_as in ((oldest, "oldest supported"), (package, "pinned")):
            cli = node_cli(TOOLS, folder)
            if cli is None:
                raise SystemExit(
                    f"compat: {name} ({tried_as}) is not in .tools/node_modules/{folder}: "
                    "run `bash scripts/install-system-deps.sh test`"
                )
            found.append((key, cli[0], cli[1], tried_as))
    return found


def newest_clis(
    pinned: dict[str, str], newest_is_pinned: set[str]
) -> list[tuple[str, list[str], str, str]]:
    """The newest CLIs npm serves, installed into build/compat/npm; a client whose newest is
    the pinned version is named in `newest_is_pinned` instead."""
    found = []
    for key, (name, package, _) in CLIS.items():
        latest = npm_latest(package)
        if latest == pinned.get(key):
            say(f"{package}: the newest ({latest}) is the pinned version")
            newest_is_pinned.add(name)
            continue
        command, version = npm_install(f"{key}-newest", package, latest)
        found.append((key, command, version, "newest"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cli",
        action="append",
        default=[],
        metavar="NAME=VERSION",
        help="run only this CLI version (claude-code=2.1.100, codex=0.130.0); nothing is written",
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not write the docs")
    args = parser.parse_args(argv)
    BUILD.mkdir(parents=True, exist_ok=True)
    if args.cli:
        clis = []
        for spec in args.cli:
            key, _, version = spec.partition("=")
            if key not in CLIS or not version:
                parser.error(f"--cli {spec}: NAME=VERSION with NAME one of {', '.join(CLIS)}")
            command, got = npm_install(f"{key}-{version}", CLIS[key][1], version)
            clis.append((key, command, got, "tried"))
        rows = run_matrix(clis, [], r_httr2=False)
        return report(rows, table(rows, []), write=False)
    suite = suite_clis()
    pinned = {key: version for key, _, version, tried_as in suite if tried_as == "pinned"}
    newest_is_pinned: set[str] = set()
    clis = suite + newest_clis(pinned, newest_is_pinned)
    newest = venv("newest", NEWEST_PYTHON)
    jupyter_ai = venv("jupyter-ai", JUPYTER_AI)
    oldest = venv("oldest", OLDEST_PYTHON)
    pythons: list[tuple[str, str, set[str] | None]] = [
        (oldest, "oldest supported", None),
        (sys.executable, "pinned", None),
        (newest, "newest", None),
        (jupyter_ai, "newest", {"jupyter-ai"}),
    ]
    rows = run_matrix(clis, pythons, r_httr2=shutil.which("Rscript") is not None)
    # pip installs the newest versions that fit together: say which PyPI has newer still
    held = []
    for where, package in [(newest, p) for p in NEWEST_PYTHON] + [(jupyter_ai, "jupyter-ai")]:
        on_pypi, installed = pypi_latest(newest, package), package_version(where, package)
        if on_pypi and installed and on_pypi != installed:
            held.append(f"{package} {on_pypi} (installed: {installed})")
    notes = list(NOTES)
    if held:
        notes.insert(0, "Newer on PyPI than the newest that install together: " + ", ".join(held))
    text = table(rows, notes, newest_is_pinned)
    return report(rows, text, write=not args.no_write)


def report(rows: list[Row], text: str, *, write: bool) -> int:
    """Print the table (and write it), name each failure; the exit status."""
    print(text)
    if write:
        write_doc(text)
        say(f"wrote the table into {DOC.relative_to(ROOT)}")
    failed = [r for r in rows if r.outcome.failed]
    for r in failed:
        print(
            f"compat: FAILED {r.client} {r.version} ({r.tried_as}), {r.check}: {r.outcome.detail}",
            file=sys.stderr,
        )
    if not rows:
        print("compat: no check ran", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    sys.exit(main())
