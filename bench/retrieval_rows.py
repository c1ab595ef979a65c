"""Rows for the bench_retrieval warehouse's synthesized schemas (:func:`fill`).

Every table of a synthesized schema is filled to 60-120 rows (its own seeded count), its
hand-written rows kept first: keys numbered on from theirs; a column that names another table's
key (declared, the same name, or one of ``ALIASES``) takes that table's keys, so joins still
find rows, and a bridge table holds each pair once; other columns get plausible values from
their name and type: names, cities, codes, amounts, dates (as DATE, and as ISO text where a CRM
export keeps them so). Everything is drawn from ``random.Random`` seeded by names: the same
code gives the same rows. The values questions name are planted afterwards
(``retrieval_plant``).
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

ROWS = (60, 120)  # rows of every synthesized table

# a column that names another table's key by another name
ALIASES = {
    "owner_user_id": "user_id",
    "parent_account_id": "account_id",
    "supportrepid": "employeeid",
    "reportsto": "employeeid",
    "head_id": "physician_id",
    "home_team_id": "team_id",
    "away_team_id": "team_id",
    "start_station_id": "station_id",
    "end_station_id": "station_id",
    "medication_code": "code",
    "advisor": "",  # a staff number, not a student's key
}

FIRST = (
    "Ada Ben Chloe Dev Elena Farid Grace Hiro Ines Jonas Kofi Lena Marco Nadia Omar Priya Quinn "
    "Rosa Sven Tariq Uma Victor Wen Ximena Yusuf Zoe Aiko Bruno Carmen Diego Emma Felix Greta "
    "Hugo Ingrid Jamal Kira Liam Maya Noah Olga Pablo Rania Sofia Tomas"
).split()
LAST = (
    "Alvarez Becker Chen Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Larsen Moreau "
    "Nakamura Okafor Petrov Quispe Rossi Santos Tanaka Ueda Varga Weber Xu Yamamoto Zimmermann "
    "Novak Silva Brown Murphy Kaur Nguyen Ahmed Costa Horvat Lindqvist Mensah Oliveira Park"
).split()
CITIES = (
    "Lisbon,Porto,Lyon,Leeds,Bristol,Osaka,Denver,Austin,Accra,Nairobi,Lima,Quito,Krakow,Gdansk,"
    "Turin,Seville,Ghent,Utrecht,Aarhus,Tampere,Cork,Perth,Hobart,Calgary,Halifax,Recife,Cusco,"
    "Mombasa,Kyoto,Busan"
).split(",")
COUNTRIES = (
    "Portugal,France,Germany,Japan,Kenya,Peru,Poland,Italy,Spain,Belgium,Netherlands,Denmark,"
    "Finland,Ireland,Australia,Canada,Brazil,Chile,India,Norway,Mexico,Ghana,Austria,Sweden"
).split(",")
STATES = "CA,TX,NY,WA,OR,IL,MA,CO,GA,FL,OH,MN,AZ,NC,VA,PA".split(",")
STREETS = "Main,Oak,Elm,Market,Mission,High,Church,Park,Mill,River,Station,King,Queen".split(",")
ADJ = (
    "Silent,Golden,Hidden,Broken,Northern,Electric,Quiet,Wild,Last,Distant,Crimson,Paper,Iron,"
    "Velvet,Hollow,Bright,Restless,Frozen,Secret,Lonely"
).split(",")
NOUN = (
    "River,Garden,Harbor,Machine,Forest,Summer,Mirror,Empire,Letter,Island,Engine,Orchard,Signal,"
    "Lantern,Valley,Winter,Bridge,Circus,Compass,Tide"
).split(",")
FIELDS = (
    "Chemistry,Economics,Geology,Linguistics,Mathematics,Music,Philosophy,Sociology,Statistics,"
    "Astronomy,Anthropology,Architecture,Ecology,Engineering,Genetics,Law,Nursing,Psychology"
).split(",")
SYL = "ka,lo,mi,ra,ve,to,sa,ni,do,pe,lu,ze,ri,mo,fa,ta,no,be,li,su".split(",")
# categorical columns: a short list each (by column name, lower case)
VOCAB: dict[str, list[str]] = {
    "pettype": ["cat", "dog", "hamster", "rabbit", "parrot", "turtle", "goldfish"],
    "sex": ["F", "M"],
    "gender": ["F", "M"],
    "semester": ["Fall", "Spring", "Summer", "Winter"],
    "grade": ["A", "A-", "B+", "B", "B-", "C+", "C", "D", "F"],
    "building": ["Watson", "Painter", "Taylor", "Packard", "Main", "Lamberton", "Whitman"],
    "status": ["shipped", "delivered", "pending", "cancelled", "returned"],
    "blood_type": ["O+", "O-", "A+", "A-", "B+", "B-", "AB+", "AB-"],
    "nationality": ["Nigerian", "Chilean", "Norwegian", "Irish", "Japanese", "Mexican", "Polish"],
    "continent": ["Africa", "Asia", "Europe", "North America", "South America", "Oceania"],
    "language": ["Swahili", "Portuguese", "English", "French", "Spanish", "Arabic", "Hindi"],
    "events": ["Rain", "Fog", "Fog-Rain", "Rain-Thunderstorm", "Sun"],
    "subscription_type": ["Subscriber", "Customer"],
    "industry": ["Banking", "Retail", "Energy", "Healthcare", "Media", "Technology", "Shipping"],
    "rating": ["Hot", "Warm", "Cold"],
    "account_source": ["Web", "Referral", "Partner", "Trade Show", "Cold Call"],
    "ownership": ["Public", "Private", "Subsidiary", "Other"],
    "customer_priority": ["High", "Medium", "Low"],
    "sla_tier": ["Gold", "Silver", "Platinum", "Bronze"],
    "upsell_opportunity": ["Yes", "No", "Maybe"],
    "clean_status": ["Matched", "Different", "Pending", "Not Compared"],
    "department": ["Finance", "Procurement", "IT", "Operations", "Legal", "Sales"],
    "lead_source": ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"],
    "salutation": ["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."],
    "suffix": ["Jr.", "Sr.", "II", "III"],
    "level": ["Primary", "Secondary", "Tertiary"],
    "languages": ["English", "German", "French", "Spanish", "Japanese"],
    "email_bounced_reason": ["mailbox full", "unknown user", "blocked"],
    "stage_name": [
        "Prospecting",
        "Qualification",
        "Needs Analysis",
        "Proposal/Price Quote",
        "Negotiation/Review",
        "Closed Won",
        "Closed Lost",
    ],
    "forecast_category": ["Pipeline", "Best Case", "Commit", "Closed", "Omitted"],
    "region": ["EMEA", "APAC", "AMER", "LATAM"],
    "dose": ["5 mg", "10 mg", "20 mg", "250 mg", "500 mg", "1 g"],
    "district": ["North", "South", "East", "West", "Central", "Coastal", "Highlands"],
    "zip_code": ["94107", "94041", "95113", "94301", "94063"],
    "title@hr.titles": [
        "Engineer",
        "Senior Engineer",
        "Staff",
        "Senior Staff",
        "Assistant Engineer",
        "Technique Leader",
        "Manager",
    ],
    "title@crm.contacts": ["CEO", "CFO", "VP Sales", "Buyer", "Engineer", "Analyst", "Director"],
    "title@music_store.employee": [
        "Sales Support Agent",
        "IT Staff",
        "Sales Manager",
        "General Manager",
    ],
    "position@hospital.physicians": [
        "Staff Internist",
        "Attending",
        "Surgeon",
        "Resident",
        "Senior Attending",
        "Head Chief of Medicine",
    ],
    "position@football.players": ["goalkeeper", "defender", "midfielder", "striker"],
    "city@bikeshare.stations": [
        "San Francisco",
        "San Jose",
        "Palo Alto",
        "Mountain View",
        "Redwood City",
    ],
    "room": ["101", "102", "110", "201", "204", "310", "312", "Clinic A", "Clinic B"],
}


# -- the CRM schema (wide tables), synthesized like the others in retrieval_warehouse


def crm() -> tuple[str, str, list]:
    """A CRM export's shape: wide account and contact tables (modelled on common CRMs)."""
    acct = [
        "account_id INTEGER PRIMARY KEY",
        "account_name VARCHAR",
        "owner_user_id INTEGER",
        "industry VARCHAR",
        "annual_revenue DECIMAL(14,2)",
        "employee_count INTEGER",
        "rating VARCHAR",
        "account_source VARCHAR",
        "parent_account_id INTEGER",
    ]
    for p in ("billing", "shipping"):
        acct += [
            f"{p}_{x} VARCHAR"
            for x in ("street", "city", "state", "postal_code", "country", "latitude", "longitude")
        ]
    acct += [
        f"{x} VARCHAR"
        for x in (
            "phone",
            "fax",
            "website",
            "ticker_symbol",
            "ownership",
            "sic_code",
            "naics_code",
            "duns_number",
            "tradestyle",
            "year_started",
            "description",
            "customer_priority",
            "sla_tier",
            "sla_expiration_date",
            "upsell_opportunity",
            "active_flag",
            "number_of_locations",
            "clean_status",
            "jigsaw_company_id",
            "photo_url",
            "last_activity_date",
            "last_viewed_date",
            "created_by_id",
            "last_modified_by_id",
            "created_date",
            "last_modified_date",
            "system_modstamp",
            "is_deleted",
        )
    ]
    contact = [
        "contact_id INTEGER PRIMARY KEY",
        "account_id INTEGER",
        "first_name VARCHAR",
        "last_name VARCHAR",
        "email VARCHAR",
        "title VARCHAR",
        "department VARCHAR",
        "lead_source VARCHAR",
    ] + [
        f"{x} VARCHAR"
        for x in (
            "salutation",
            "middle_name",
            "suffix",
            "mailing_street",
            "mailing_city",
            "mailing_state",
            "mailing_postal_code",
            "mailing_country",
            "mobile_phone",
            "home_phone",
            "other_phone",
            "assistant_name",
            "assistant_phone",
            "birthdate",
            "reports_to_id",
            "email_bounced_reason",
            "has_opted_out_of_email",
            "do_not_call",
            "languages",
            "level",
            "created_date",
            "last_modified_date",
        )
    ]
    ddl = f"""
        CREATE TABLE accounts ({", ".join(acct)});
        CREATE TABLE contacts ({", ".join(contact)});
        CREATE TABLE opportunities (opportunity_id INTEGER PRIMARY KEY, account_id INTEGER,
            name VARCHAR, stage_name VARCHAR, amount DECIMAL(14,2), probability INTEGER,
            close_date DATE, forecast_category VARCHAR, owner_user_id INTEGER);
        CREATE TABLE crm_users (user_id INTEGER PRIMARY KEY, user_name VARCHAR,
            email VARCHAR, region VARCHAR, is_active BOOLEAN);
    """
    rows = [
        (
            "opportunities",
            [
                (1, 1, "Renewal", "Prospecting", 1000, 10, None, "Pipeline", 1),
                (2, 1, "Upsell", "Closed Won", 5000, 100, None, "Closed", 1),
            ],
        )
    ]
    return "crm", ddl, rows


def seeded(*parts: Any) -> random.Random:
    # str seeds are hashed with SHA-512 by random: stable across runs and machines
    return random.Random("|".join(map(str, parts)))


def _word(rng: random.Random, n: int = 3) -> str:
    return "".join(rng.choice(SYL) for _ in range(n)).capitalize()


def _date(rng: random.Random, lo: int, hi: int) -> dt.date:
    start = dt.date(lo, 1, 1)
    return start + dt.timedelta(days=rng.randrange((dt.date(hi, 12, 31) - start).days))


def _catalog(con: Any, schema: str) -> dict[str, dict[str, Any]]:
    """table -> {"cols": [(name, type)], "pk": column or None} of one schema."""
    out: dict[str, dict[str, Any]] = {}
    for table, col, typ in con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? ORDER BY table_name, ordinal_position",
        [schema],
    ).fetchall():
        out.setdefault(table, {"cols": [], "pk": None})["cols"].append((col, typ))
    for table, cols in con.execute(
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
        "WHERE schema_name = ? AND constraint_type = 'PRIMARY KEY'",
        [schema],
    ).fetchall():
        out[table]["pk"] = cols[0]
    for table, info in out.items():
        if info["pk"] is None:  # film_db declares none: Movie.movieId is its key by name
            first = info["cols"][0][0]
            if first.lower() in (f"{table.lower()}id", f"{table.lower()}_id"):
                info["pk"] = first
    return out


def _new_key(table: str, col: str, typ: str, keys: list[Any], rng: random.Random) -> Any:
    """A key not in `keys` (the caller checks: a random one may be taken)."""
    n = len(keys) + rng.randrange(1000)  # numbered codes: a free number soon
    if "INT" in typ:
        return max([k for k in keys if isinstance(k, int)] or [0]) + 1
    low = col.lower()
    if low == "dept_no":
        return f"d{n:03d}"
    if low == "country_code":
        return "".join(rng.choice("ABCDEFGHIJKLMNOPRSTUVWZ") for _ in range(3))
    if low == "course_id":
        return f"{rng.choice(FIELDS)[:3].upper()}-{rng.randrange(100, 500)}"
    return f"{table[:3].upper()}{n:04d}"


def _unique(rng: random.Random, make: Any, seen: set[Any]) -> Any:
    for _ in range(200):
        v = make(rng)
        if v not in seen:
            seen.add(v)
            return v
    return make(rng)


def _text(rng: random.Random, schema: str, table: str, col: str, seen: set[Any]) -> Any:
    """A plausible text value for a column, from its name (and table, for "name")."""
    low, tl = col.lower(), table.lower()
    for key in (f"{low}@{schema}.{tl}", low):
        if key in VOCAB:
            return rng.choice(VOCAB[key])
    person = lambda r: f"{r.choice(FIRST)} {r.choice(LAST)}"  # noqa: E731
    if any(w in low for w in ("date", "modstamp")) or low == "birthdate":
        d = _date(rng, 1950 if "birth" in low else 2015, 2000 if "birth" in low else 2025)
        return d.isoformat() if "modstamp" not in low else f"{d.isoformat()}T09:30:00Z"
    if low in ("year_started",):
        return str(rng.randrange(1900, 2020))
    if "phone" in low or low == "fax":
        return f"+1 {rng.randrange(200, 999)} {rng.randrange(100, 999)} {rng.randrange(1000, 9999)}"
    if low in ("is_deleted", "active_flag", "has_opted_out_of_email", "do_not_call"):
        return rng.choice(["true", "false"] if low != "active_flag" else ["Yes", "No"])
    if "email" in low:
        return f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}{rng.randrange(100)}@example.org"
    if "url" in low or low == "website":
        return f"https://www.{_word(rng).lower()}.example.com"
    if "street" in low:
        return f"{rng.randrange(1, 999)} {rng.choice(STREETS)} St"
    if "city" in low and low != "city_code":
        return rng.choice(CITIES)
    if "state" in low:
        return rng.choice(STATES)
    if "country" in low:
        return rng.choice(COUNTRIES)
    if "postal" in low:
        return f"{rng.randrange(10000, 99999)}"
    if "latitude" in low or "longitude" in low:
        return f"{rng.uniform(-60, 60):.4f}"
    if low == "description":
        since = rng.randrange(1990, 2024)
        return f"{rng.choice(ADJ)} {rng.choice(NOUN).lower()} account, served since {since}"
    if low in ("city_code",):
        return rng.choice(["BAL", "HKG", "WAS", "PIT", "NYC", "CHI", "LON", "PHL", "SFO"])
    if low in ("isbn",):
        return f"978-{rng.randrange(0, 9)}-{rng.randrange(1000, 9999)}-{rng.randrange(1000, 9999)}-{rng.randrange(10)}"
    if low in ("room_no",):
        return f"{rng.choice('RPWT')}{rng.randrange(100, 600)}"
    if low in ("ticker_symbol",):
        return "".join(rng.choice("ABCDEFGHKLMNPRSTVX") for _ in range(4))
    if any(w in low for w in ("_id", "code", "number", "duns", "locations")):
        return str(rng.randrange(10**5, 10**9))
    if low in ("lname", "last_name", "lastname"):
        return rng.choice(LAST)
    if low in ("fname", "first_name", "firstname", "middle_name", "charactername"):
        return rng.choice(FIRST)
    if low in ("dept_name", "genrename", "cat_nm") or (low == "name" and tl in ("genre",)):
        return _unique(rng, lambda r: f"{r.choice(ADJ)} {r.choice(FIELDS)}", seen)
    if low == "name" and tl in ("hospital_departments",):
        return _unique(rng, lambda r: f"{r.choice(FIELDS)} Unit {r.randrange(1, 9)}", seen)
    if low == "name" and tl == "medications" or low == "brand":
        end = ("ol", "ine", "pril", "mab", "ex") if low == "name" else ("", "ex", "a")
        return _unique(rng, lambda r: _word(r) + r.choice(end), seen)
    if low == "name" and tl in ("countries",):
        return _unique(rng, lambda r: _word(r, 3) + r.choice(["ia", "land", "stan", ""]), seen)
    if low == "name" and tl in ("stations",):
        return _unique(rng, lambda r: f"{r.choice(STREETS)} at {r.choice(STREETS)}", seen)
    if low == "name" and tl in ("cities",):
        return _unique(rng, lambda r: _word(r) + r.choice(["ville", "burg", " Bay", ""]), seen)
    if low in ("title", "name") and tl in (
        "courses",
        "books",
        "movie",
        "album",
        "track",
        "playlist",
        "mediatype",
        "artist",
        "stadiums",
        "opportunities",
        "publishers",
    ):
        return _unique(rng, lambda r: f"The {r.choice(ADJ)} {r.choice(NOUN)}", seen)
    if (
        low in ("team_name", "publisher_name", "tradestyle", "jigsaw_company_id")
        or low == "account_name"
    ):
        return _unique(rng, lambda r: f"{_word(r)} {r.choice(NOUN)}", seen)
    if "name" in low or low in ("composer", "assistant_name"):
        return person(rng)
    if low == "reports_to_id":
        return str(rng.randrange(1, 60))
    return _word(rng)


NUMBERS: list[tuple[str, int, int]] = [  # (name part, low, high) of integer columns
    ("birth", 1920, 2000),
    ("year", 1990, 2025),
    ("founded", 1860, 2005),
    ("season", 2016, 2025),
    ("pet_age", 1, 15),
    ("age", 17, 80),
    ("capacity", 5000, 90000),
    ("tot_cred", 0, 150),
    ("credits", 1, 6),
    ("salary", 40000, 160000),
    ("budget", 50000, 900000),
    ("population", 10000, 90000000),
    ("qty", 1, 10),
    ("quantity", 1, 5),
    ("milliseconds", 120000, 420000),
    ("runtime", 75, 200),
    ("stars", 1, 5),
    ("duration", 60, 7200),
    ("dock", 11, 27),
    ("available", 0, 20),
    ("temperature", 40, 95),
    ("humidity", 20, 100),
    ("goals", 0, 5),
    ("shirt", 1, 40),
    ("probability", 0, 100),
    ("employee_count", 5, 50000),
    ("major", 500, 650),
    ("advisor", 1000, 9999),
    ("bike", 1, 700),
    ("userid", 1, 500),
    ("emp_no", 10001, 10100),
]
FLOATS: list[tuple[str, float, float]] = [
    ("weight", 0.1, 40.0),
    ("price", 0.99, 199.0),
    ("unit", 0.99, 199.0),
    ("total", 1.0, 30.0),
    ("revenue", 1e5, 5e8),
    ("amount", 1000.0, 500000.0),
    ("budget", 5e4, 9e5),
    ("surface", 20.0, 9e6),
    ("percentage", 0.5, 99.5),
    ("lat", 37.2, 37.9),
    ("long", -122.5, -121.8),
    ("salary", 40000.0, 160000.0),
]


def _value(rng: random.Random, schema: str, table: str, col: str, typ: str, seen: set[Any]) -> Any:
    low = col.lower()
    if typ == "BOOLEAN":
        return rng.random() < 0.5
    if typ == "DATE" or typ.startswith("TIMESTAMP"):
        lo, hi = (1940, 2006) if "birth" in low else (1985, 2024) if "hire" in low else (2019, 2025)
        d = _date(rng, lo, hi)
        if typ == "DATE":
            return d
        return dt.datetime(d.year, d.month, d.day, rng.randrange(6, 23), rng.randrange(60))
    if "INT" in typ:
        for part, lo, hi in NUMBERS:
            if part in low:
                return rng.randrange(lo, hi + 1)
        return rng.randrange(1, 1000)
    if low == "unitprice":  # a music store's prices
        return rng.choice([0.99, 0.99, 0.99, 1.29, 1.99])
    if typ in ("DOUBLE", "FLOAT") or typ.startswith("DECIMAL"):
        for part, flo, fhi in FLOATS:
            if part in low:
                return round(rng.uniform(flo, fhi), 2)
        return round(rng.uniform(0, 1000), 2)
    return _text(rng, schema, table, col, seen)


def fill(con: Any, schema: str) -> dict[str, int]:
    """Fill every table of `schema` to 60-120 rows, keeping the rows it has; table -> rows."""
    cat = _catalog(con, schema)
    keys: dict[str, tuple[str, list[Any]]] = {}  # key column (lower) -> (table, keys)
    target: dict[str, int] = {}
    have: dict[str, list[tuple[Any, ...]]] = {}
    for table in sorted(cat):
        have[table] = con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
        target[table] = max(len(have[table]), seeded(schema, table, "rows").randint(*ROWS))
    for table, info in sorted(cat.items()):  # keys first, so that references can use them
        pk = info["pk"]
        if pk is None:
            continue
        names = [c for c, _ in info["cols"]]
        typ = dict(info["cols"])[pk]
        got = [r[names.index(pk)] for r in have[table]]
        rng = seeded(schema, table, "keys")
        while len(got) < target[table]:
            k = _new_key(table, pk, typ, got, rng)
            if k not in got:
                got.append(k)
        keys[pk.lower()] = (table, got)
    counts = {}
    new: dict[str, list[tuple[Any, ...]]] = {}
    for table, info in sorted(cat.items()):
        names = [c for c, _ in info["cols"]]
        rng = seeded(schema, table, "rows")
        rows = [tuple(r) for r in have[table]]
        seen: dict[str, set[Any]] = {c: {r[i] for r in rows} for i, c in enumerate(names)}
        pk = info["pk"]
        refs = [i for i, c in enumerate(names) if _ref(c, table, keys) is not None]
        bridge = pk is None and len(refs) >= 2  # each pair of references once
        pairs = {tuple(r[i] for i in refs) for r in rows}
        for _ in range(50 * ROWS[1]):
            if len(rows) >= target[table]:
                break
            n = len(rows)
            row = []
            for col, typ in info["cols"]:
                if col == pk:
                    row.append(keys[pk.lower()][1][n])
                elif (ref := _ref(col, table, keys)) is not None:
                    row.append(rng.choice(ref))
                elif col.lower() in ("returned_on", "to_date", "reportsto") and rng.random() < 0.2:
                    row.append(None)  # not returned yet, still in post, the top of the chart
                else:
                    row.append(_value(rng, schema, table, col, typ, seen[col]))
            if bridge:
                pair = tuple(row[i] for i in refs)
                if pair in pairs:
                    continue
                pairs.add(pair)
            rows.append(tuple(row))
        new[table] = rows[len(have[table]) :]
        counts[f"{schema}.{table}"] = len(rows)
    # the referenced tables' rows first: declared foreign keys are checked on insert
    parents = {
        t: {keys[_alias(c)][0] for c, _ in info["cols"] if _ref(c, t, keys) is not None} - {t}
        for t, info in cat.items()
    }
    while new:
        table = next(t for t in sorted(new) if not parents[t] & set(new))
        if new[table]:
            marks = ", ".join("?" * len(cat[table]["cols"]))
            con.executemany(f'INSERT INTO "{schema}"."{table}" VALUES ({marks})', new.pop(table))
        else:
            new.pop(table)
    return counts


def _alias(col: str) -> str:
    return ALIASES.get(col.lower(), col.lower())


def _ref(col: str, table: str, keys: dict[str, tuple[str, list[Any]]]) -> list[Any] | None:
    """The keys a column refers to: another table's key of its name (or alias)."""
    low = col.lower()
    name = _alias(col)
    hit = keys.get(name)
    if hit is None or (hit[0] == table and name == low):
        return None
    return hit[1]
