"""The admin dashboard: the stores' series queries, the page and its Server-Sent Events through a
Jupyter server, and the whole thing in headless Chromium through a real JupyterHub (an admin
logs in with the hub's login form, watches requests arrive, resets a user's limits, runs a
health check; a non-admin gets 403; forged cross-site POSTs are refused).

The screenshot of the hub run goes to test-artifacts/dashboard.png (git-ignored). The image
docs/admins/console.md shows, docs/img/dashboard.png, is written only when asked for:
RSQL_RECORD_DOCS_IMAGES=1 (a test run never changes a tracked file).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import http.cookiejar
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import run_cells

CHROMIUM = "/usr/bin/chromium"
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
ARTIFACTS = REPO / "test-artifacts"
DOCS_SCREENSHOT = REPO / "docs" / "img" / "dashboard.png"


def screenshot_path() -> Path:
    """Where the hub run's screenshot goes: the docs' image only when asked to record it."""
    if os.environ.get("RSQL_RECORD_DOCS_IMAGES") == "1":
        return DOCS_SCREENSHOT
    return ARTIFACTS / "dashboard.png"


NASTY = "<img src=x onerror=alert(1)>"


# -- the stores' queries -----------------------------------------------------------------------


def _row(
    ts: float,
    user: str,
    status: int,
    cost: float = 0.0,
    latency: float = 100.0,
    error: str | None = None,
    notebook: str | None = None,
    cell: str | None = None,
) -> tuple:
    from jupyter_server_ext.engine.accounting.usage import COLUMNS

    given = {
        "ts": ts,
        "request_id": f"r{ts}",
        "user": user,
        "client": "api",
        "model": "m",
        "upstream": "a1",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": cost,
        "latency_ms": latency,
        "overhead_ms": latency / 10,
        "status": status,
        "error": error,
        "cache_hit": 0,
        "notebook": notebook,
        "cell": cell,
    }
    return tuple(given.get(c) for c in COLUMNS)  # the usage log's column order; the rest empty


async def _exercise(store: Any) -> None:
    await store.open()
    now = time.time()
    base = now - now % 60 - 120  # the start of the minute two minutes ago
    await store.write(
        [
            _row(base + 1, "ann", 200, 0.01, 100),
            _row(base + 2, "ann", 200, 0.01, 300),
            _row(base + 3, "bob", 429, error="rate_limit_exceeded"),
            _row(base + 61, "bob", 200, 0.5, 50),
            _row(base + 62, "bob", 502, error="upstream_failed"),
            _row(base + 63, "cy", 429, error="over_budget"),
            _row(now - 7200, "old", 200, 9.0),  # outside the hour and the window asked for
        ]
    )
    series = await store.series(now - 3600, 60, now)
    assert len(series) == 61 and series[-1]["t"] <= now < series[-1]["t"] + 60
    by_t = {p["t"]: p for p in series}
    first, second = by_t[int(base)], by_t[int(base) + 60]
    assert (first["answered"], first["refused"], first["failed"]) == (2, 1, 0)
    assert (second["answered"], second["refused"], second["failed"]) == (1, 1, 1)
    assert first["p50_ms"] == 200 and first["p95_ms"] == 290 and first["overhead_p50_ms"] == 20
    assert by_t[int(base) + 120]["answered"] == 0 and by_t[int(base) + 120]["p50_ms"] is None
    top = await store.top_users(now - 3600, "requests", 10)
    assert [u["user"] for u in top] == ["bob", "ann", "cy"]
    assert {u["user"]: u["requests"] for u in top} == {"ann": 2, "bob": 3, "cy": 1}
    by_cost = await store.top_users(now - 3600, "cost", 2)
    assert [u["user"] for u in by_cost] == ["bob", "ann"] and by_cost[0]["cost_usd"] == 0.5
    assert by_cost[0]["errors"] == 2 and by_cost[0]["tokens"] == 45
    totals = await store.totals(now - 3600)
    assert totals == {"requests": 6, "cost_usd": 0.52}
    # cost per notebook and cell: a user's rows in one notebook, its dearest cells first
    await store.write(
        [
            _row(now - 30, "ann", 200, 0.25, notebook="nb-a", cell="c1"),
            _row(now - 29, "ann", 200, 0.5, notebook="nb-a", cell="c2"),
            _row(now - 28, "ann", 200, 0.5, notebook="nb-a", cell="c2"),
            _row(now - 27, "bob", 200, 2.0, notebook="nb-a", cell="c1"),
            _row(now - 26, "ann", 200, 0.1, notebook="nb-b"),
            # outside the week asked for
            _row(now - 8 * 86400, "ann", 200, 5.0, notebook="nb-a", cell="c1"),
        ]
    )
    rows = await store.notebooks(now - 7 * 86400)
    assert [(r["user"], r["notebook"], r["requests"], r["cost_usd"], r["cells"]) for r in rows] == [
        ("bob", "nb-a", 1, 2.0, 1),
        ("ann", "nb-a", 3, 1.25, 2),
        ("ann", "nb-b", 1, 0.1, 0),
    ]
    assert [r["notebook"] for r in await store.notebooks(now - 7 * 86400, "ann", 1)] == ["nb-a"]
    cost = await store.notebook_cost("ann", "nb-a", now - 29.5, now - 7 * 86400)
    assert (cost["today"]["requests"], cost["week"]["requests"], cost["week"]["cost_usd"]) == (
        2,
        3,
        1.25,
    )
    assert cost["week"]["prompt_tokens"] == 30 and [c["cell"] for c in cost["cells"]] == [
        "c2",
        "c1",
    ]
    await store.close()


def test_sqlite_series_and_top_users(tmp_path: Path) -> None:
    from jupyter_server_ext.store.sqlite import SQLiteStore

    asyncio.run(_exercise(SQLiteStore(str(tmp_path / "u.sqlite"))))


def test_postgres_series_and_top_users(pg_database: str) -> None:
    require("asyncpg")
    from jupyter_server_ext.store.postgres import PostgresStore

    asyncio.run(_exercise(PostgresStore(pg_database)))


# -- Server-Sent Events ------------------------------------------------------------------------


class EventStream:
    """A GET on admin/events, read event by event with a deadline."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        u = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
        self.conn.request("GET", u.path, headers={"Accept": "text/event-stream", **headers})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.content_type = self.resp.getheader("Content-Type", "")

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next event with data: {"event", "id", "data" (parsed), "after" (seconds)}."""
        t0 = time.monotonic()
        event: dict[str, Any] = {}
        while time.monotonic() - t0 < timeout:
            line = self.resp.fp.readline().decode()
            if not line:
                raise EOFError("the event stream ended")
            line = line.rstrip("\n")
            if not line:
                if "data" in event:
                    event["after"] = time.monotonic() - t0
                    return event
                event = {}
                continue
            field, _, value = line.partition(": ")
            if field == "data":
                event["data"] = json.loads(value)
            elif field in ("event", "id"):
                event[field] = value
        raise TimeoutError(f"no event within {timeout} s")

    def close(self) -> None:
        self.conn.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 302 itself is what the test looks at


@pytest.mark.slow
def test_dashboard_and_events_through_a_jupyter_server(
    jupyter_server_factory, fresh_provider: FakeProvider
) -> None:
    server = jupyter_server_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "user_limits": ["2/minute"],
        }
    )
    auth = {"Authorization": f"token {server.token}"}

    # unauthenticated API-style requests keep the proxy's JSON 401
    status, headers, body = server.request("GET", "admin/", token=None)
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", body
    status, headers, body = server.request("GET", "admin/events", token=None)
    assert status == 401 and headers["content-type"].startswith("application/json")
    # a browser asking for the page without a login is sent to Jupyter's login page
    req = urllib.request.Request(server.proxy_url + "admin/", headers={"Accept": "text/html"})
    with pytest.raises(urllib.error.HTTPError) as redirect:
        urllib.request.build_opener(_NoRedirect).open(req, timeout=30)
    assert redirect.value.code == 302
    assert redirect.value.headers["Location"].startswith("/login?next=%2Frsql%2Fadmin%2F")

    # the owner is an admin: the page, with its data escaped into a JSON script element
    status, headers, body = server.request("GET", "admin/")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html"), page[:300]
    assert 'id="initial"' in page and "static/vendor/uPlot.iife.min.js" in page
    initial = json.loads(
        re.search(r'<script type="application/json" id="initial">(.*?)</script>', page, re.S).group(
            1
        )
    )
    assert initial["status"]["status"] == "ok" and {u["alias"] for u in initial["upstreams"]} == {
        "a1",
        "a2",
        "b1",
    }
    for name in (
        "vendor/uPlot.iife.min.js",
        "dashboard.js",
        "dashboard.css",
        "vendor/uPlot.LICENSE",
    ):
        status, headers, body = server.request("GET", "admin/static/" + name)
        assert status == 200 and len(body) > 100, name
    assert server.request("GET", "admin/static/../handlers.py")[0] == 404
    # no provider key anywhere on the page
    assert "sk-test" not in page

    stream = EventStream(server.proxy_url + "admin/events", auth)
    try:
        assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
        first = stream.next(5)
        assert first["event"] == "snapshot" and first["after"] < 5
        snap = first["data"]
        assert {
            "status",
            "upstreams",
            "hour",
            "series",
            "today",
            "top_requests",
            "top_cost",
            "errors",
            "budget",
        } <= set(snap)
        assert snap["hour"]["requests"] == 0
        # requests: 2 answered, then the user's 2/minute limit refuses the third
        for _ in range(3):
            server.request(
                "POST", "v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}
            )
        t0 = time.monotonic()
        while True:
            ev = stream.next(5)  # events keep coming every few seconds at the latest
            hour = ev["data"]["hour"]
            if hour["requests"] >= 3:
                break
            assert time.monotonic() - t0 < 10, ev["data"]["hour"]
        mins = ev["data"]["series"]
        assert sum(p["answered"] for p in mins) == 2 and sum(p["refused"] for p in mins) == 1
        assert ev["data"]["top_requests"][0]["requests"] == 3
        assert int(ev["id"]) > int(first["id"])
        gap = stream.next(6)["after"]  # nothing happens: still an event within a few seconds
        assert gap < 4, gap
        assert "sk-test" not in json.dumps(ev["data"])
    finally:
        stream.close()

    # a browser session: Jupyter's login cookie, and its XSRF token from the page
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(
        server.url + f"login?next=/&token={server.token}", timeout=10
    ).read()  # sets the login cookie
    page = opener.open(server.proxy_url + "admin/", timeout=10).read().decode()
    xsrf = re.search(r'<meta name="rsql-csrf" content="([^"]+)"', page).group(1)
    assert xsrf and any(c.name == "_xsrf" for c in jar)

    def post(path: str, headers: dict[str, str]) -> int:
        req = urllib.request.Request(
            server.proxy_url + path,
            data=b'{"all": true}',
            method="POST",
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with opener.open(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code

    # the cookie alone, as a cross-site form would send it
    assert post("admin/reset-limits", {}) == 403
    assert post("admin/reset-limits", {"X-XSRFToken": "forged"}) == 403
    assert post("admin/reset-limits", {"X-XSRFToken": xsrf}) == 200
    assert post("admin/upstreams/health-check", {"X-XSRFToken": xsrf}) == 200


@pytest.mark.slow
def test_a_non_admin_gets_a_403_page(jupyter_server_factory, fresh_provider: FakeProvider) -> None:
    server = jupyter_server_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "admin_groups": ["staff"],
        },
        named_users=True,
    )
    status, headers, body = server.request("GET", "admin/", token="tok-alice")
    assert status == 403 and headers["content-type"].startswith("text/html"), body
    assert b"not an rsql admin" in body and b"alice" in body
    status, headers, body = server.request("GET", "admin/events", token="tok-alice")
    assert status == 403 and json.loads(body)["error"]["type"] == "permission_error"
    status, headers, body = server.request("GET", "admin/", token="tok-carol")  # staff: an admin
    assert status == 200 and b'id="initial"' in body


# -- in Chromium, through a real JupyterHub ------------------------------------------------------


def _login(page: Any, hub_url: str, user: str) -> None:
    """Open the dashboard and log in through the hub's own login form (DummyAuthenticator)."""
    page.goto(hub_url + "services/rsql/admin/", timeout=60_000)
    page.wait_for_selector("#username_input", timeout=30_000)
    assert "/hub/login" in page.url, page.url
    page.fill("#username_input", user)
    page.fill("#password_input", "any")
    page.click("#login_submit")


def _chat(client: Any, content: str, model: str = "fake-small") -> str:
    import openai

    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}])
        return "ok"
    except openai.RateLimitError:
        return "429"
    except openai.APIStatusError as exc:
        return str(exc.status_code)


def _spawn(hub: Any, user: str) -> None:
    """Start `user`'s single-user server through the hub's API and wait until it is ready."""
    status, _ = hub.api("POST", f"users/{user}/server")
    assert status in (201, 202), hub.log()[-3000:]
    deadline = time.monotonic() + 120
    while not ((hub.api("GET", f"users/{user}")[1].get("servers") or {}).get("", {}).get("ready")):
        assert time.monotonic() < deadline, hub.log()[-5000:]
        time.sleep(0.5)


@pytest.mark.slow
def test_dashboard_in_chromium_through_the_hub(
    hub: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    require("playwright", reason="pip install playwright (driving Debian's chromium; no download)")
    require("chromium", binary=True, reason="apt install chromium")
    require("openai")
    import openai
    from playwright.sync_api import sync_playwright

    base = hub.url + "services/rsql/"
    # API clients still get JSON 401 without a token, whatever the path
    status, body = hub.service("GET", "admin/", None)
    assert status == 401 and body["error"]["code"] == "invalid_api_key", body
    bob = openai.OpenAI(base_url=base + "v1", api_key=hub.token_for("bob"), max_retries=0)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            admin = browser.new_context(viewport={"width": 1280, "height": 1000})
            page = admin.new_page()
            _login(page, hub.url, "carla")
            page.wait_for_url(re.compile(r".*/services/rsql/admin/$"), timeout=60_000)
            page.wait_for_function(
                "() => window.rsqlDashboard && window.rsqlDashboard.updates >= 2", timeout=20_000
            )
            assert page.inner_text("#overall") == "ok"
            assert "carla" in page.inner_text("header")
            page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads
            answered0 = page.evaluate(
                "() => rsqlDashboard.charts.requests.data[1].reduce((a, v) => a + v, 0)"
            )

            # traffic: bob's 3/minute, then 429s; a request naming a model with HTML in it
            results = [_chat(bob, f"question {i}") for i in range(5)]
            assert results == ["ok", "ok", "ok", "429", "429"], results
            dave = openai.OpenAI(base_url=base + "v1", api_key=hub.token_for("dave"), max_retries=0)
            assert _chat(dave, "hi", model=NASTY) == "404"
            page.wait_for_function(
                "() => { const s = rsqlDashboard.last; return s.hour.requests >= 6 &&"
                " rsqlDashboard.charts.requests.data[2].reduce((a, v) => a + v, 0) >= 2; }",
                timeout=15_000,
            )
            answered = page.evaluate(
                "() => rsqlDashboard.charts.requests.data[1].reduce((a, v) => a + v, 0)"
            )
            assert answered >= answered0 + 3
            assert page.evaluate("() => window.__sameDocument") is True  # live, not reloaded
            top = page.locator("#top-requests tbody tr").first
            assert (
                top.locator("a").inner_text() == "bob"
                and top.locator("td").nth(1).inner_text() == "5"
            )
            assert top.locator("a").get_attribute("href") == "users/bob"
            assert int(page.inner_text("#c-requests")) >= 6
            # data is text, never markup: the model name shows as written, no element made of it
            page.wait_for_function(
                f"() => document.querySelector('#errors').textContent.includes({json.dumps(NASTY)})",
                timeout=10_000,
            )
            assert page.locator("#errors img").count() == 0
            assert "sk-test" not in page.content()
            keys = page.locator("#upstreams tbody tr")
            assert keys.count() == 3 and "healthy" in keys.first.inner_text()

            # and from a user's kernel: erin's spawned server asks with %%ask, and the page,
            # still the same document, counts her among the users
            erin = hub.token_for("erin")
            _spawn(hub, "erin")
            cells = ["%load_ext rsql_magic", "%%ask\nHow do I pivot a table in pandas?"]
            with concurrent.futures.ThreadPoolExecutor(
                1
            ) as pool:  # Playwright holds this thread's loop
                asked = pool.submit(
                    asyncio.run, run_cells(hub.url + "user/erin/", erin, cells)
                ).result(300)
            assert all(r["error"] is None for r in asked), asked
            page.wait_for_function(
                "() => [...document.querySelectorAll('#top-requests tbody a')].some(a => a.textContent === 'erin')",
                timeout=20_000,
            )
            assert page.evaluate("() => window.__sameDocument") is True

            shot = screenshot_path()
            docs_image = DOCS_SCREENSHOT.read_bytes() if DOCS_SCREENSHOT.exists() else None
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000  # a page, not an empty frame
            if shot != DOCS_SCREENSHOT:  # the tracked image is left as it was
                assert (DOCS_SCREENSHOT.read_bytes() if DOCS_SCREENSHOT.exists() else None) == (
                    docs_image
                )

            # reset bob's limits with the button: bob gets answers again (refused just before,
            # whatever time the steps above took; a refusal takes nothing from his window)
            assert _chat(bob, "before the reset") == "429"
            page.locator("#top-requests button.reset[data-user='bob']").click()
            page.wait_for_function(
                "() => document.querySelector(\"#top-requests button.reset[data-user='bob']\")"
                ".textContent.startsWith('reset (')",
                timeout=10_000,
            )
            assert _chat(bob, "after the reset") == "ok"
            # a request from a notebook shows in the notebooks table, by its hashed name
            bob.chat.completions.create(
                model="fake-small",
                messages=[{"role": "user", "content": "from lab"}],
                extra_headers={"X-RSQL-Notebook": "lab.ipynb", "X-RSQL-Cell": "c1"},
            )
            page.wait_for_function(
                "() => [...document.querySelectorAll('#notebooks tbody tr')]"
                ".some(r => r.textContent.includes('bob') && r.textContent.includes('nb-'))",
                timeout=20_000,
            )
            assert "lab.ipynb" not in page.inner_text("#notebooks")
            # a policy window started from the page holds its group at once, and ends with its button
            page.fill("#window-form input[name=name]", "drill")
            page.fill("#window-form input[name=groups]", "staff")
            page.fill("#window-form input[name=minutes]", "5")
            page.fill("#window-form input[name=message]", NASTY)
            page.click("#window-form button[type=submit]")
            page.wait_for_function(
                "() => document.querySelector('#window-result').textContent.startsWith('started')",
                timeout=10_000,
            )
            status, body = hub.service(
                "POST",
                "v1/chat/completions",
                hub.token_for("prof"),
                {"messages": [{"role": "user", "content": "hi"}]},
            )
            assert status == 403 and body["error"]["code"] == "policy_window"
            page.wait_for_function(
                "() => document.querySelector('#windows').textContent.includes('drill')",
                timeout=15_000,
            )
            assert page.locator("#windows img").count() == 0  # the message is text
            page.locator("#windows button[data-window='drill']").click()
            page.wait_for_function(
                "() => !document.querySelector(\"#windows button[data-window='drill']\")",
                timeout=15_000,
            )
            assert (
                hub.service(
                    "POST",
                    "v1/chat/completions",
                    hub.token_for("prof"),
                    {"messages": [{"role": "user", "content": "hi"}]},
                )[0]
                == 200
            )
            page.click("#health-check")
            page.wait_for_function(
                "() => /a1: healthy/.test(document.querySelector('#health-result').textContent)",
                timeout=20_000,
            )

            # bob's activity, as a page
            # (followed by address: the table is redrawn with each event, so a click may miss)
            resp = page.goto(
                base + "admin/" + top.locator("a").get_attribute("href"), timeout=30_000
            )
            assert resp is not None and resp.status == 200, (
                resp and resp.status,
                page.content()[:2000],
            )
            page.wait_for_selector("#activity", timeout=10_000)
            assert page.inner_text("#who") == "bob"
            deadline = time.monotonic() + 10
            while page.locator("#activity tbody tr").count() < 6:  # the usage log writes in batches
                assert time.monotonic() < deadline, page.inner_text("#activity")
                time.sleep(0.5)
                page.reload()
                page.wait_for_selector("#activity", timeout=10_000)
            page.goto(base + "admin/", timeout=30_000)
            page.wait_for_function(
                "() => window.rsqlDashboard && rsqlDashboard.updates >= 1", timeout=20_000
            )

            # forged requests carrying the admin's cookie are refused
            cookies = {c["name"]: c["value"] for c in admin.cookies()}
            cookie_header = "; ".join(f"{k}={v}" for k, v in cookies.items())
            csrf = page.get_attribute('meta[name="rsql-csrf"]', "content")
            assert csrf and csrf not in page.url

            def forged(headers: dict[str, str]) -> int:
                req = urllib.request.Request(
                    base + "admin/reset-limits",
                    data=b'{"all": true}',
                    method="POST",
                    headers={
                        "Content-Type": "application/json",
                        "Cookie": cookie_header,
                        **headers,
                    },
                )
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        return r.status
                except urllib.error.HTTPError as err:
                    return err.code

            assert forged({}) == 403  # no token: what a cross-site form post carries at most
            assert forged({"X-XSRFToken": csrf, "Origin": "http://evil.example"}) == 403
            assert forged({"X-XSRFToken": csrf, "Sec-Fetch-Site": "cross-site"}) == 403
            assert forged({"X-XSRFToken": "0" * 64}) == 403
            assert forged({"X-XSRFToken": csrf}) == 200  # the page's own way
            # and from the page itself, a fetch without the token is refused too
            status = page.evaluate(
                "async () => (await fetch('reset-limits', {method: 'POST', body: '{\"all\": true}',"
                " headers: {'Content-Type': 'application/json'}})).status"
            )
            assert status == 403

            # the same page on a phone: one column, nothing wider than the screen
            phone = browser.new_context(
                viewport={"width": 390, "height": 844},
                is_mobile=True,
                storage_state=admin.storage_state(),
            )
            ppage = phone.new_page()
            ppage.goto(base + "admin/", timeout=30_000)
            ppage.wait_for_function(
                "() => window.rsqlDashboard && rsqlDashboard.updates >= 1", timeout=20_000
            )
            overflow = ppage.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 1, overflow
            ppage.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
            phone.close()

            # a user who is not an admin: a clear 403 page
            other = browser.new_context()
            opage = other.new_page()
            _login(opage, hub.url, "erin")
            opage.wait_for_selector("#forbidden", timeout=60_000)
            assert "erin" in opage.inner_text(
                "#forbidden"
            ) and "not an rsql admin" in opage.inner_text("#forbidden")
            other.close()
        finally:
            browser.close()


def test_snapshot_says_when_the_state_backend_and_database_are_unreachable() -> None:
    """Real Redis and PostgreSQL clients pointed at closed loopback ports: the snapshot (and so
    the page's red banners) says which backend is down, and still shows the keys."""
    require("redis")
    require("asyncpg")
    from jupyter_server_ext.config.proxy import RSQLProxy
    from jupyter_server_ext.dashboard.feed import build_snapshot
    from jupyter_server_ext.wiring import build_engine
    from tests.helpers import free_port

    proxy = RSQLProxy(
        upstreams=[
            {
                "name": "k1",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key": "sk-never-shown-0123456789",
                "models": ["m"],
            }
        ],
        state_url=f"redis://127.0.0.1:{free_port()}/0",
        database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
        global_daily_budget_usd=5.0,
    )
    engine = build_engine(proxy, default_database="sqlite:///:memory:")

    async def go() -> dict[str, Any]:
        try:
            return await asyncio.wait_for(build_snapshot(engine), 60)
        finally:
            await engine.state.close()

    snap = asyncio.run(go())
    assert snap["status"]["status"] == "degraded"
    assert snap["status"]["state"] == {"backend": "redis", "reachable": False}
    assert snap["status"]["database"] == {"backend": "postgresql", "reachable": False}
    assert snap["database_error"] and "unreachable" in snap["database_error"]
    assert snap["budget"] is None and "state backend unreachable" in snap["budget_error"]
    assert [u["alias"] for u in snap["upstreams"]] == ["k1"]
    assert "sk-never-shown" not in json.dumps(snap)
