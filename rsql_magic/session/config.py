"""What one shell's settings decide, apart from any request: :class:`SessionConfig`.

Three parts, in this order:

- the settings themselves, one trait each with its default written once:
  :class:`AskSettings` is configured as ``RSQLMagic.<name>`` and :class:`SqlAISettings` as
  ``SqlAIMagics.<name>``; each magic class inherits its settings class, so ``%config`` and
  ``ipython_config.py`` reach them under the magic's name;
- the course the user is in, as ``GET me`` says (issue 75): :class:`Course`. A course's rules
  are the proxy's, enforced there for every client: a tutor window puts the course's tutoring
  instruction first in every request (``tutor``), and a course log keeps what the students of a
  group ask and are answered, for their course staff (``course_log``). The kernel only says so,
  in the user's words: ``%ask_status``, the chat panel, a banner over answers in tutor mode, and
  the course log's notice with the first answer of each kernel session. Every text there came
  from the proxy: bounded, one line, control characters out
  (:func:`~rsql_magic.sanitize.plain_text`); what shows it still makes it safe for its medium;
- :class:`SessionConfig`: the settings in force (the registered magics', else the trait
  defaults), the model to ask and whether the admin allows it, batch or interactive, the proxy
  client (and its replay and preview variants), the course, and the context and SQL policies.
  Everything there is read again on each call, so a ``%config`` between cells takes effect at
  once; the request flow that uses it is :class:`~rsql_magic.session.session.Session`'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode
from traitlets.config import Configurable

from rsql_sql.policy import DEFAULT_MAX_RESULT_BYTES, SqlPolicy

from .. import defaults
from ..client import ProxyClient
from ..errors import ProxyError, UsageError
from ..privacy import ContextPolicy, cached_me, effective_policy
from ..render import utc_text
from ..replay import Replay, ReplayStore, resolve_mode, resolve_path
from ..sanitize import plain_text

__all__ = [
    "DEFAULT_LOG_NOTICE",
    "AskSettings",
    "Course",
    "CourseLog",
    "SessionConfig",
    "SqlAISettings",
    "TutorMode",
    "course_of",
]


# -- the settings ----------------------------------------------------------------------------


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


# -- the course ------------------------------------------------------------------------------

# the notice when the proxy names a course log but no words of its own (an answer's header
# before GET me was read again)
DEFAULT_LOG_NOTICE = (
    "Your course staff can read your assistant conversations (what you ask and the answers)."
)
# what tutor mode means, for a student who has never met it
TUTOR_MEANS = "the assistant gives hints, questions and partial code, not whole solutions"
_MAX_TEXT = 600


def _text(value: Any, limit: int = _MAX_TEXT) -> str:
    """A value from the proxy as one bounded line of plain text ("" when not a string)."""
    if not isinstance(value, str):
        return ""
    return " ".join(plain_text(value).split())[:limit]


@dataclass(frozen=True)
class TutorMode:
    """The tutor window in force (``GET me``'s ``tutor``)."""

    window: str
    message: str  # the admin's words to students ("" when none)
    agent: bool  # agent mode's tools run in this window
    completions: bool  # the editor's completions offer names (False: none)
    ends_at: str  # ISO UTC, or ""
    ends_at_local: str  # in the admin's time zone, or ""

    @property
    def until(self) -> str:
        """``until 2026-11-23 18:00 UTC (19:00 CET)``, or "" when the window has no end."""
        if not self.ends_at:
            return ""
        local = f" ({self.ends_at_local})" if self.ends_at_local else ""
        return f"until {utc_text(self.ends_at)}{local}"

    def line(self) -> str:
        """One plain line: the mode, its window and end, and the admin's message."""
        head = f"Tutor mode (window {self.window or '?'}"
        head += f", {self.until})" if self.until else ")"
        said = self.message or f"in tutor mode {TUTOR_MEANS}."
        return f"{head}: {said}"

    def details(self) -> str:
        """What the mode changes besides the answers: agent tools and completions."""
        agent = "agent tools run" if self.agent else "agent tools are off"
        names = "completions offer names only" if self.completions else "completions are off"
        return f"{TUTOR_MEANS}; {agent}; {names}"


@dataclass(frozen=True)
class CourseLog:
    """The course log that keeps this user's conversations (``GET me``'s ``course_log``)."""

    group: str
    instructors: str
    retention_days: int | None
    notice: str

    def line(self) -> str:
        """The notice in plain words, with who reads and for how long it is kept."""
        kept = f", kept {self.retention_days} days" if self.retention_days else ""
        who = f"course staff: {self.instructors}" if self.instructors else "your course staff"
        return f"{self.notice} (course {self.group or '?'}; {who}{kept})"


@dataclass(frozen=True)
class Course:
    """What ``GET me`` says of the user's course: each part None when not in force."""

    tutor: TutorMode | None = None
    log: CourseLog | None = None


def course_of(me: Any) -> Course:
    """The course parts of a ``GET me`` answer (anything else, or an older proxy: none)."""
    if not isinstance(me, dict):
        return Course()
    return Course(_tutor(me.get("tutor")), _log(me.get("course_log")))


def _tutor(value: Any) -> TutorMode | None:
    if not isinstance(value, dict):
        return None
    return TutorMode(
        window=_text(value.get("window"), 120),
        message=_text(value.get("message")),
        agent=value.get("agent") is True,
        completions=value.get("completions") not in (False, None, "off"),
        ends_at=_text(value.get("ends_at"), 40),
        ends_at_local=_text(value.get("ends_at_local"), 80),
    )


def _log(value: Any) -> CourseLog | None:
    if not isinstance(value, dict):
        return None
    days = value.get("retention_days")
    return CourseLog(
        group=_text(value.get("group"), 120),
        instructors=_text(value.get("instructors"), 120),
        retention_days=days if isinstance(days, int) and not isinstance(days, bool) else None,
        notice=_text(value.get("notice")) or DEFAULT_LOG_NOTICE,
    )


# -- what the settings decide ----------------------------------------------------------------

_S = TypeVar("_S", bound=Configurable)  # a magic's settings class


class SessionConfig:
    """The settings of one shell and what follows from them (see the module docstring)."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.recorded_here: set[str] = set()  # replay fingerprints this kernel recorded
        self._defaults: dict[type, Configurable] = {}

    # -- settings ------------------------------------------------------------------------

    def _settings(self, name: str, kind: type[_S]) -> _S:
        registry = getattr(getattr(self.shell, "magics_manager", None), "registry", {})
        magic = registry.get(name)
        if isinstance(magic, kind):
            return magic
        # the magic is not loaded (the chat panel on its own): the trait defaults
        default = self._defaults.get(kind)
        if not isinstance(default, kind):
            default = kind(parent=self.shell if hasattr(self.shell, "config") else None)
            self._defaults[kind] = default
        return default

    @property
    def ask(self) -> AskSettings:
        """%%ask's settings: the registered ``RSQLMagic``, else the defaults."""
        return self._settings("RSQLMagic", AskSettings)

    @property
    def sql(self) -> SqlAISettings:
        """%%sql_ai's settings: the registered ``SqlAIMagics``, else the defaults."""
        return self._settings("SqlAIMagics", SqlAISettings)

    # -- the model -----------------------------------------------------------------------

    def model(
        self, override: str | None = None, *, sql: bool = False, client: ProxyClient | None = None
    ) -> str | None:
        """The model to ask: ``override`` (``--model``), then ``SqlAIMagics.model`` (``sql``),
        then ``RSQLMagic.model``, then env ``RSQL_MODEL``; then, given `client`, the default
        its proxy names for this user (:meth:`user_default_model`); None: the proxy's default."""
        return (
            override
            or (self.sql.model if sql else None)
            or self.ask.model
            or os.environ.get("RSQL_MODEL")
            or (self.user_default_model(client, sql=sql) if client is not None else None)
        )

    def user_default_model(self, client: ProxyClient, *, sql: bool = False) -> str | None:
        """The model ``GET me`` names for this user when none is: ``sql_default_model`` for
        %%sql_ai, else ``default_model``. None when unknown (``GET me`` is read at most once a
        minute and may fail: then the proxy's own default applies, and nothing fails)."""
        me = cached_me(client) or {}
        for key in ("sql_default_model", "default_model") if sql else ("default_model",):
            if isinstance(model := me.get(key), str) and model:
                return model
        return None

    def check_models(
        self, client: ProxyClient, models: Sequence[str | None], *, option: bool
    ) -> None:
        """UsageError, before anything is sent, when one of `models` is not among those
        ``GET me`` says this user may use now (the proxy would refuse it). Inside a window that
        turns the assistant off the proxy's refusal says more (its message, its end): none here.
        `option`: the models came from ``--model`` (else from the settings)."""
        me = cached_me(client) or {}
        allowed, window = me.get("models"), me.get("window")
        if not isinstance(allowed, list) or (
            isinstance(window, dict) and window.get("mode") == "off"
        ):
            return
        names = [str(m) for m in allowed if isinstance(m, str)]
        for model in models:
            if model and model not in names:
                where = (
                    "--model"
                    if option
                    else "the configured model (RSQLMagic.model, SqlAIMagics.model or RSQL_MODEL)"
                )
                raise UsageError(
                    f"{where} {model!r}: you may not use this model now. Models you may "
                    f"use: {', '.join(names) or 'none'} (the proxy's admin decides)"
                )

    def course(self, client: ProxyClient | None) -> Course:
        """The course rules ``GET me`` says are in force for this user (tutor mode, the course
        log), read at most once a minute; none when unknown (no proxy, an older one)."""
        if client is None or client.unavailable is not None:
            return Course()
        return course_of(cached_me(client))

    def is_batch(self) -> bool:
        """Is this a batch run (nbconvert, papermill)? See :mod:`rsql_magic.session`."""
        if self.ask.batch != "auto":
            return self.ask.batch == "yes"
        env = os.environ.get("RSQL_BATCH", "").strip().lower()
        if env in ("1", "true", "yes"):
            return True
        if env in ("0", "false", "no"):
            return False
        kernel = getattr(self.shell, "kernel", None)
        if kernel is None:
            return False  # terminal IPython honours set_next_input and has a person watching
        return not bool(getattr(kernel, "_allow_stdin", True))

    # -- the proxy -----------------------------------------------------------------------

    def client(self) -> ProxyClient:
        """The proxy, discovered on every call: discovery is cheap (the environment and one
        file lookup), and a proxy that appears or goes away between cells is seen at once."""
        ask = self.ask
        return ProxyClient.discover(
            ask.proxy_url or None, ask.proxy_token or None, timeout=ask.timeout
        )

    def preview_client(self) -> ProxyClient:
        """The proxy for a context preview: a missing one is no error there, nothing is sent."""
        try:
            return self.client()
        except ProxyError as e:
            return ProxyClient(description="no proxy", unavailable=e)

    def replay(self, kind: str, question: str, cell: str) -> Replay | None:
        """The replay settings for one cell's chat calls (None: replay is off)."""
        mode = resolve_mode(self.ask.replay, self.is_batch())
        if mode == "off":
            return None
        return Replay(
            mode,
            ReplayStore(resolve_path(self.ask.replay_file)),
            kind=kind,
            cell=cell,
            question=question,
            recorded_here=self.recorded_here,
        )

    def replay_client(self, replay: Replay | None) -> ProxyClient:
        """The proxy client; with replay on, a failed discovery is deferred to the first call
        that really needs the proxy, so a recorded notebook reruns with no proxy at all."""
        try:
            client = self.client()
        except ProxyError as e:
            if replay is None or replay.mode == "refresh":
                raise
            return ProxyClient(description="no proxy (replay only)", unavailable=e)
        if replay is not None and client.token:
            replay.secrets = (client.token,)
        return client

    # -- the policies --------------------------------------------------------------------

    def policy_for(self, client: ProxyClient | None) -> tuple[ContextPolicy, list[str]]:
        """The context policy in force for ``client``: the admin's (from ``GET me``, cached
        briefly, fail closed when unreadable) merged with ``RSQLMagic.context_policy``."""
        return effective_policy(client, self.ask.context_policy)

    def sql_policy(self) -> SqlPolicy:
        """What generated SQL may do: ``SqlAIMagics.allowed_functions`` and ``postgres_role``."""
        return SqlPolicy.make(
            self.sql.allowed_functions, self.sql.postgres_role, self.sql.max_result_bytes
        )
