"""Files the proxy and the kernel read or write, attacked as another local OS user would (issue 24).

The usage log and the pseudonym key are made owner-only whatever the umask; a key file someone
else could have written stops start-up; a `jpserver-<pid>.json` someone else could have
written never gets the kernel's questions or token; a long embeddings `input` list is reserved
per item, so a tiny budget refuses it before the provider is called.
"""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rsql_magic.client import ProxyClient, ProxyError
from tests.helpers import missing, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import InProcessJupyter

ASK = {"model": "fake-small", "messages": [{"role": "user", "content": "hello"}]}
PRICED = {"prices": {"fake-small": {"input": 1000.0, "output": 1000.0}}}  # $0.001 a token
NOBODY = 65534  # a uid that is not ours: the "other local user"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def wait_for(paths: list[Path], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, (
            f"never created: {[str(p) for p in paths if not p.exists()]}"
        )
        time.sleep(0.05)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common default umask, under which new files are world-readable unless made otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def proxy_config(fp: FakeProvider, **extra: object) -> dict:
    return {"upstreams": upstreams_for(fp), "default_model": "fake-small", **extra}


# -- the usage log and the pseudonym key of a personal server -------------------------------------


def test_the_usage_log_its_wal_and_the_pseudonym_key_are_private_under_umask_022(
    jupyter_app_factory, fresh_provider: FakeProvider, jp_data_dir: Path, umask_022: None
) -> None:
    server: InProcessJupyter = jupyter_app_factory(proxy_config(fresh_provider, log_prompts=True))
    status, _, raw = server.request("POST", "v1/chat/completions", ASK)
    assert status == 200, raw
    folder = jp_data_dir / "rsql"
    log = folder / "usage.sqlite"
    wait_for([log, Path(f"{log}-wal"), Path(f"{log}-shm"), folder / "user-id.secret"])
    modes = {p.name: oct(mode(p)) for p in folder.iterdir() if p.is_file()}
    assert {name: m for name, m in modes.items() if m != "0o600"} == {}, modes
    assert mode(folder) == 0o700


def test_an_existing_world_readable_usage_log_is_made_private_with_a_warning(
    jupyter_app_factory, fresh_provider: FakeProvider, jp_data_dir: Path, umask_022: None
) -> None:
    folder = jp_data_dir / "rsql"
    folder.mkdir()
    log = folder / "usage.sqlite"
    for path in (log, Path(f"{log}-wal")):  # as an older version left them under umask 022
        path.touch()
        path.chmod(0o644)
    server: InProcessJupyter = jupyter_app_factory(proxy_config(fresh_provider))
    assert server.request("POST", "v1/chat/completions", ASK)[0] == 200
    wait_for([Path(f"{log}-shm")])
    deadline = time.monotonic() + 10
    while "open to other users" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    for path in (log, Path(f"{log}-wal"), Path(f"{log}-shm")):
        assert mode(path) == 0o600, (path, oct(mode(path)))
    assert f"{log} was open to other users (mode 0644), now 0600" in server.log()


def plant_key(jp_data_dir: Path, **how: int) -> Path:
    folder = jp_data_dir / "rsql"
    folder.mkdir(exist_ok=True)
    key = folder / "user-id.secret"
    key.write_text("a-key-the-attacker-knows")
    key.chmod(how.get("chmod", 0o600))
    if "uid" in how:
        os.chown(key, how["uid"], -1)
    return key


def test_a_pseudonym_key_others_can_write_stops_startup(
    jupyter_app_factory, fresh_provider: FakeProvider, jp_data_dir: Path
) -> None:
    key = plant_key(jp_data_dir, chmod=0o666)
    with pytest.raises(RuntimeError) as err:
        jupyter_app_factory(proxy_config(fresh_provider))
    msg = str(err.value)
    assert str(key) in msg and "writable by other users" in msg and "chmod 600" in msg


def test_a_pseudonym_key_that_is_a_symlink_stops_startup(
    jupyter_app_factory, fresh_provider: FakeProvider, jp_data_dir: Path, tmp_path: Path
) -> None:
    theirs = tmp_path / "attackers-key"
    theirs.write_text("a-key-the-attacker-knows")
    theirs.chmod(0o600)
    (jp_data_dir / "rsql").mkdir()
    (jp_data_dir / "rsql" / "user-id.secret").symlink_to(theirs)
    with pytest.raises(RuntimeError) as err:
        jupyter_app_factory(proxy_config(fresh_provider))
    assert "user-id.secret is a symbolic link" in str(err.value)


def test_a_pseudonym_key_owned_by_another_user_stops_startup(
    jupyter_app_factory, fresh_provider: FakeProvider, jp_data_dir: Path
) -> None:
    if os.geteuid() != 0:
        missing("planting a file owned by another user needs root")
    plant_key(jp_data_dir, uid=NOBODY)
    with pytest.raises(RuntimeError) as err:
        jupyter_app_factory(proxy_config(fresh_provider))
    assert f"owned by uid {NOBODY}" in str(err.value) and "delete it" in str(err.value)


def test_a_readable_pseudonym_key_of_our_own_is_made_private(
    jupyter_app_factory, fresh_provider: FakeProvider, jp_data_dir: Path
) -> None:
    key = plant_key(jp_data_dir, chmod=0o644)
    server = jupyter_app_factory(proxy_config(fresh_provider))
    assert mode(key) == 0o600
    assert "user-id.secret was readable by other users" in server.log()


# -- the kernel's discovery of the server it runs under ------------------------------------------


class Recorder(http.server.BaseHTTPRequestHandler):
    """The attacker's server: remembers every request and the Authorization it carried."""

    seen: list[tuple[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        self.send_response(500)
        self.end_headers()

    do_GET = do_POST  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[tuple[str, list]]:
    Recorder.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/", Recorder.seen
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A kernel launched by a Jupyter server with pid 4242; no other way to find a proxy."""
    for k in list(os.environ):
        if k.startswith(("RSQL_", "JUPYTERHUB_")) or k.endswith("_API_KEY"):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("JPY_PARENT_PID", "4242")
    monkeypatch.setenv("RSQL_LOCAL_MODEL", "off")  # nor the local model, for "no proxy found"
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    return runtime


def ask_through_discovery(token: str | None = None) -> ProxyClient | None:
    """What a magic does: discover the proxy, then ask it; None when no proxy was found."""
    try:
        client = ProxyClient.discover(None, token, timeout=5)
    except ProxyError as exc:
        assert "no proxy found" in str(exc)
        return None
    try:
        client.chat(ASK["messages"], model="fake-small")
    except ProxyError:
        pass
    return client


def plant_server_file(runtime: Path, url: str, **how: int) -> Path:
    path = runtime / "jpserver-4242.json"
    path.write_text(json.dumps({"url": url, "token": "attackers-token", "pid": 4242}))
    path.chmod(how.get("chmod", 0o600))
    if "uid" in how:
        os.chown(path, how["uid"], -1)
    return path


def test_a_server_file_planted_by_another_user_never_gets_the_kernels_token(
    kernel_env: Path, attacker: tuple[str, list]
) -> None:
    if os.geteuid() != 0:
        missing("planting a file owned by another user needs root")
    url, seen = attacker
    path = plant_server_file(kernel_env, url, uid=NOBODY)
    with pytest.warns(UserWarning, match=f"ignored {path}: it is owned by uid {NOBODY}"):
        assert ask_through_discovery("users-own-token") is None
    assert seen == []


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_server_file_others_could_have_written_is_ignored(
    where: str, kernel_env: Path, attacker: tuple[str, list]
) -> None:
    url, seen = attacker
    path = plant_server_file(kernel_env, url, chmod=0o666 if where == "file" else 0o600)
    if where == "folder":  # a runtime folder anyone can write: they could have swapped the file
        kernel_env.chmod(0o777)
    with pytest.warns(UserWarning, match="writable by other users"):
        assert ask_through_discovery("users-own-token") is None
    assert seen == []
    assert path.exists()


def test_a_server_file_that_is_a_symlink_is_ignored(
    kernel_env: Path, attacker: tuple[str, list], tmp_path: Path
) -> None:
    url, seen = attacker
    target = plant_server_file(tmp_path, url)  # their file elsewhere, linked into our folder
    (kernel_env / "jpserver-4242.json").symlink_to(target)
    with pytest.warns(UserWarning, match="is a symbolic link"):
        assert ask_through_discovery("users-own-token") is None
    assert seen == []


def test_the_kernels_own_server_file_is_still_used(
    kernel_env: Path, attacker: tuple[str, list]
) -> None:
    # the honest case, through the same recorder: our own private file in our own folder is trusted
    url, seen = attacker
    plant_server_file(kernel_env, url)
    client = ask_through_discovery()
    assert client is not None and client.base_url == url + "rsql/"
    assert seen == [("/rsql/v1/chat/completions", "Bearer attackers-token")]


# -- POST v1/embeddings under a small budget --------------------------------------------------------


@pytest.fixture
def budgeted(jupyter_app_factory, fresh_provider: FakeProvider) -> InProcessJupyter:
    # $0.05 a day at $0.001 a token: 50 input tokens
    return jupyter_app_factory(
        {
            **proxy_config(
                fresh_provider,
                upstreams=upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED),
            ),
            "user_daily_budget_usd": 0.05,
        },
        named_users=True,
    )


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param(["hello"] * 1999, id="1999-short-strings"),
        pytest.param(["hello"] * 30, id="30-short-strings"),
        pytest.param([[1] * 4000] * 50, id="token-id-lists"),
    ],
)
def test_a_long_embeddings_input_list_is_reserved_per_item_under_a_tiny_budget(
    inputs: list, budgeted: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    status, _, raw = budgeted.request(
        "POST", "v1/embeddings", {"model": "fake-small", "input": inputs}, token="tok-alice"
    )
    assert status in (400, 429), raw
    err = json.loads(raw)["error"]
    assert err["code"] in ("over_budget", "user_budget") or status == 429, err
    assert fresh_provider.received == []
    # one short input fits the budget: the budget, not the endpoint, refused the list
    status, _, raw = budgeted.request(
        "POST", "v1/embeddings", {"model": "fake-small", "input": "hello"}, token="tok-alice"
    )
    assert status == 200, raw
    assert [r.path for r in fresh_provider.received] == ["embeddings"]


def test_more_embeddings_inputs_than_allowed_are_refused_naming_the_limit(
    budgeted: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    status, _, raw = budgeted.request(
        "POST", "v1/embeddings", {"model": "fake-small", "input": ["x"] * 5000}, token="tok-alice"
    )
    assert status == 400, raw
    err = json.loads(raw)["error"]
    assert err["param"] == "input" and "at most 2000" in err["message"]
    assert fresh_provider.received == []
