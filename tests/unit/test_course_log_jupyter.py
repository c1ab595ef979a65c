"""The course log in a Jupyter server (the extension host, in-process, its users named by token
with their groups as a hub's single-user server gives them): the same routes and pages as the
hub service, a student told, their instructor reading, another student refused; and a bad
``course_logs`` in a Jupyter server's configuration named at start-up, one line each."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request

import pytest
from traitlets.config import Config

from jupyter_server_ext.config.check import proxy_config_problems
from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider

# the named users of tests/helpers/servers.py: alice and bob students, carol staff
COURSE = {"students": {"instructors": "staff", "retention_days": 7}}


def test_a_student_is_told_and_their_instructor_reads_them_in_a_jupyter_server(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "course_logs": COURSE,
        },
        named_users=True,
    )
    status, _, body = server.request("GET", "me", token="tok-alice")
    told = json.loads(body)["course_log"]
    assert told["group"] == "students" and told["notice"].startswith("Your course staff")
    # the editor's status item tells a student who uses only completions; carol is not logged
    status, _, body = server.request("GET", "inline", token="tok-alice")
    assert json.loads(body)["course_log"] == {"course": "students", "notice": told["notice"]}
    status, _, body = server.request("GET", "inline", token="tok-carol")
    assert status == 200 and json.loads(body)["course_log"] is None
    status, head, body = server.request(
        "POST",
        "v1/chat/completions",
        {"model": "fake-small", "messages": [{"role": "user", "content": "alice's question"}]},
        token="tok-alice",
        headers={"X-RSQL-Notebook": "week1.ipynb"},
    )
    assert status == 200 and head["x-rsql-course-log"] == "students"
    answer = json.loads(body)["choices"][0]["message"]["content"]
    status, _, body = server.request("GET", "course/groups/students/log", token="tok-carol")
    assert status == 200, body
    entry = json.loads(body)["entries"][0]
    assert (entry["student"], entry["notebook"], entry["answer"]) == (
        "alice",
        "week1.ipynb",
        answer,
    )
    assert entry["prompt"][-1] == {"role": "user", "text": "alice's question"}
    status, head, page = server.request("GET", "course/students/", token="tok-carol")
    # the prompt in its own block, as text (the fake provider's answer repeats it in another)
    assert status == 200
    assert b'<span class="role">user</span><pre>alice&#x27;s question</pre>' in page
    for path in ("course/groups/students/log", "course/groups", "course/students/"):
        assert server.request("GET", path, token="tok-bob")[0] == 403, path


@pytest.mark.parametrize(
    ("course_logs", "said"),
    [
        ({"students": {"instructors": "staff"}}, "field 'retention_days' is required"),
        (
            {"students": {"instructors": "staff", "retention_days": True}},
            "must be a whole number of days from 1 to 3650, got the bool True",
        ),
        (
            {"students": {"instructors": "staff", "retention_days": 3651}},
            "must be a whole number of days from 1 to 3650, got the int 3651",
        ),
        (
            {"students": {"instructors": "", "retention_days": 7}},
            "field 'instructors' must be a hub group's name",
        ),
        ({"*": {"instructors": "staff", "retention_days": 7}}, 'is "*", which names everyone'),
        (
            {"students": {"instructors": "staff", "retention_days": 7, "keep": 1}},
            "no field 'keep'; fields: instructors, retention_days",
        ),
    ],
)
def test_a_bad_course_log_in_a_jupyter_servers_config_is_named(
    course_logs: dict, said: str
) -> None:
    problems = proxy_config_problems(Config({"RSQLProxy": {"course_logs": course_logs}}))
    mine = [p for p in problems if "course_logs" in p]
    assert len(mine) == 1 and said in mine[0], problems


def test_a_request_another_site_makes_with_the_login_cookie_reads_nothing(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    """A page a teacher opens elsewhere must not read the log in their name, nor leave a reading
    there: an image or a fetch it makes with the Jupyter login cookie is refused; a link the
    teacher follows to the course page opens it."""
    server = jupyter_app_factory(
        {"upstreams": upstreams_for(fresh_provider), "course_logs": COURSE}
    )
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(server.url + f"login?next=/&token={server.token}", timeout=10).read()
    assert any(c.name.startswith("username") for c in jar), "no login cookie"

    def get(path: str, **fetch: str) -> tuple[int, bytes]:
        headers = {f"Sec-Fetch-{k.title()}": v for k, v in fetch.items()}
        req = urllib.request.Request(server.proxy_url + path, headers=headers)
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    image = {"site": "cross-site", "mode": "no-cors", "dest": "image"}
    status, body = get("course/groups/students/log?student=alice", **image)
    assert status == 403 and json.loads(body)["error"]["code"] == "cross_site"
    assert get("course/students/?student=alice", **image)[0] == 403
    assert (
        get("course/groups/students/log", site="same-origin", mode="cors", dest="empty")[0] == 200
    )
    followed = get("course/students/", site="cross-site", mode="navigate", dest="document")
    assert followed[0] == 200 and b"Course log of" in followed[1]
    status, _, body = server.request("GET", "admin/course-readings")
    readings = json.loads(body)["readings"]
    assert [(r["what"], r["student"]) for r in readings] == [("page", None), ("log", None)]
