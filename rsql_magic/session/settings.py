"""The settings the session reads: one trait each, its default written once.

:class:`AskSettings` is configured as ``RSQLMagic.<name>`` and :class:`SqlAISettings` as
``SqlAIMagics.<name>``: each magic class inherits its settings class, so ``%config`` and
``ipython_config.py`` reach them under the magic's name.
"""

from __future__ import annotations

from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode
from traitlets.config import Configurable

from rsql_sql.fetch import DEFAULT_MAX_RESULT_BYTES

from .. import defaults

__all__ = ["AskSettings", "SqlAISettings"]


class AskSettings(Configurable):
    """The settings of %%ask, the chat panel and the proxy connection (``RSQLMagic.<name>``)."""

    proxy_url = Unicode(
        None, allow_none=True, help="Proxy root URL; overrides RSQL_PROXY_URL and discovery."
    ).tag(config=True)
    proxy_token = Unicode(
        None,
        allow_none=True,
        help="Token for proxy_url (else RSQL_PROXY_TOKEN / JUPYTERHUB_API_TOKEN).",
    ).tag(config=True)
    model = Unicode(
        None,
        allow_none=True,
        help="Default model (else env RSQL_MODEL, else the proxy's default; --model overrides).",
    ).tag(config=True)
    context_tokens = Int(
        defaults.CONTEXT_TOKENS,
        help="Token budget for all context together (counted as the proxy counts: characters / 4, "
        "more for non-ASCII text).",
    ).tag(config=True)
    max_frames = Int(
        defaults.MAX_FRAMES, help="Frames included when none are named (the most recently defined)."
    ).tag(config=True)
    head_rows = Int(defaults.HEAD_ROWS, help="Sample rows shown per frame (0 = none).").tag(
        config=True
    )
    stats_sample = Int(
        defaults.STATS_SAMPLE,
        help="Frames longer than this get column stats from a random sample of this size.",
    ).tag(config=True)
    max_tokens = Int(
        None, allow_none=True, help="max_tokens for answers (None: proxy default)."
    ).tag(config=True)
    temperature = Float(
        0.0,
        allow_none=True,
        help="Sampling temperature. 0 (default): the same question on the same data gets the "
        "same answer, and the proxy may answer it from its cache. None: the model's default.",
    ).tag(config=True)
    timeout = Float(defaults.PROXY_TIMEOUT_S, help="Seconds to wait for one proxy call.").tag(
        config=True
    )
    stream = Bool(True, help="Stream answers into the output in interactive kernels.").tag(
        config=True
    )
    render_mode = Enum(
        ["markdown", "html", "text"],
        "markdown",
        help="markdown: text/markdown + text/plain; html: rendered here with pygments; text.",
    ).tag(config=True)
    batch = Enum(
        ["auto", "yes", "no"],
        "auto",
        help="Batch-run behaviour (no streaming, --insert into output, wait on 429, raise): "
        "auto-detected from allow_stdin / RSQL_BATCH unless set.",
    ).tag(config=True)
    batch_retries = Int(3, help="Batch runs: retries after 429/503 with Retry-After.").tag(
        config=True
    )
    agent_max_steps = Int(
        8,
        min=1,
        help="%%ask --agent: requests to the model in one turn at most; a turn still calling "
        "tools at the last one ends there, with what the model had said.",
    ).tag(config=True)
    agent_max_tokens = Int(
        60_000,
        min=1,
        help="%%ask --agent: tokens (prompts and answers, over the turn's requests) after which "
        "the turn asks the model no more.",
    ).tag(config=True)
    batch_max_wait = Float(
        300.0, help="Batch runs: most seconds to wait in total on Retry-After before failing."
    ).tag(config=True)
    replay = Unicode(
        None,
        allow_none=True,
        help="Replay store for answers: off, auto (replay if recorded, else ask and record), "
        "only (never call the proxy; a missing answer fails the cell), refresh (ask again and "
        "record). Unset: env RSQL_REPLAY, else auto in batch runs and off interactively.",
    ).tag(config=True)
    context_policy = Dict(
        default_value={},
        help="Your own context policy, e.g. {'sample_rows': False, 'value_stats': False, "
        "'redact_columns': ['*email*', 'student_id']}. It is merged with the admin's policy "
        "from the proxy (GET me): the stricter setting wins, so it can only withhold more. "
        "With the in-process engine (no proxy, no admin) it is the whole policy.",
    ).tag(config=True)
    notebook = Unicode(
        None,
        allow_none=True,
        help="This notebook's path (relative to the Jupyter server's root), sent with each request "
        "so the proxy attributes its cost here (%ask_cost). Unset: env RSQL_NOTEBOOK, else found "
        "(the Jupyter server's session, VS Code, papermill, or in a batch run the notebook file "
        "that holds the running cell).",
    ).tag(config=True)
    replay_file = Unicode(
        None,
        allow_none=True,
        help="Replay file (JSON lines). Unset: env RSQL_REPLAY_FILE, else .rsql-replay.jsonl "
        "in the kernel's working directory (the notebook's folder under nbconvert/papermill).",
    ).tag(config=True)


class SqlAISettings(Configurable):
    """The settings of %%sql_ai and the chat panel's Run SQL (``SqlAIMagics.<name>``)."""

    display_rows = Int(10, help="Rows of the result shown in the output.").tag(config=True)
    max_rows = Int(defaults.SQL_MAX_ROWS, help="Rows fetched into the DataFrame at most.").tag(
        config=True
    )
    timeout = Float(defaults.SQL_TIMEOUT_S, help="Statement timeout in seconds (0: none).").tag(
        config=True
    )
    max_retries = Int(
        defaults.SQL_MAX_RETRIES,
        help="How many times %%sql_ai asks again after a failed check, with the error fed back to "
        "the model (the default of --max-retries).",
    ).tag(config=True)
    schema_chars = Int(defaults.SCHEMA_CHARS, help="Character budget for the schema DDL sent.").tag(
        config=True
    )
    values_wait = Float(
        defaults.VALUES_WAIT_S,
        min=0.0,
        help="Seconds a question waits for its database's value index while it is first read "
        "(where the context policy allows value statistics): what is not read by then is read "
        "in the background, and the result says how much was. Raise it for a large warehouse "
        "whose first answers should already know every value; 0: never wait.",
    ).tag(config=True)
    model = Unicode(
        "", help="Model for SQL (empty: RSQLMagic.model, env RSQL_MODEL, else the proxy's)."
    ).tag(config=True)
    models = List(
        Unicode(),
        default_value=[],
        help="An escalation chain, cheapest first (e.g. ['small', 'large']): %%sql_ai asks the "
        "first and moves to the next only when its SQL still fails (parse, schema, guard or "
        "database) after its retries. Empty, or --model given: one model (SqlAIMagics.model).",
    ).tag(config=True)
    allowed_functions = List(
        Unicode(),
        default_value=[],
        help="Functions added to the allowlist of pure functions generated SQL may call: "
        "'name' for every dialect, 'dialect:name' for one (e.g. 'duckdb:levenshtein'). "
        "Only add functions that neither write, read files or the network, nor run SQL.",
    ).tag(config=True)
    postgres_role = Unicode(
        "",
        help="PostgreSQL role generated SQL runs as (SET LOCAL ROLE): one without superuser "
        "rights that can SELECT your tables. Empty: the connection's own role.",
    ).tag(config=True)
    max_result_bytes = Int(
        DEFAULT_MAX_RESULT_BYTES,
        help="Bytes of rows fetched into the DataFrame at most (about; 0: no byte bound). A "
        "result past it stops early with a note; SQLite also refuses to build a value longer "
        "than it, and DuckDB gets a memory limit of four times it for the query.",
    ).tag(config=True)
