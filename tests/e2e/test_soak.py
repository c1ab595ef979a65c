"""The soak with faults (bench/soak.py), short: 150 users, 3 replicas, about a minute, with a
replica killed, Redis restarted, PostgreSQL stopped and keys answering 429, 401, 500 and hanging."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.helpers import missing, require
from tests.helpers.services import pg_bin

pytestmark = pytest.mark.slow

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_a_short_soak_with_faults_loses_and_leaks_nothing(tmp_path: Path) -> None:
    require("redis-server", binary=True, reason="the soak restarts a Redis of its own")
    if not (pg_bin("initdb") and pg_bin("pg_ctl")):
        missing(
            "PostgreSQL's initdb and pg_ctl are not installed (the soak stops a cluster of its own)"
        )
    require("psycopg")
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    assert spec is not None and spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = soak  # its dataclasses look their module up while it loads
    spec.loader.exec_module(soak)
    res = soak.run_soak(150, 3, 60.0, pg_down=8.0, think=8.0, folder=tmp_path)
    print(soak.table(res))
    print(res["statuses"], res["events"])
    assert res["ok"], (
        soak.table(res) + f"\n{res['odd'][:5]}\n{res['missing'][:5]}\n{res['over_limit'][:5]}"
    )
    # the faults did happen, and the load saw them
    assert res["statuses"].get("503", 0) > 0, res["statuses"]  # Redis was down
    assert res["statuses"].get("429", 0) > 0, res["statuses"]  # users past their limits
    assert res["answered"] > 500 and res["usage_rows"] >= res["answered"]
