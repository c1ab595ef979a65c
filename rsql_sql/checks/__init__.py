"""The checks a generated statement passes before it runs: ``strings`` (string literals a
database may read two ways), ``guard`` (the read-only allowlist on the parsed statement and the
width bounds), ``validate`` (extract, transpile, guard and qualify against the schema)."""
