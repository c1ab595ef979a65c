"""The :class:`Session` of one shell (see :mod:`rsql_magic.session`)."""

from __future__ import annotations

import os
import re
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from IPython.core.magic import Magics
from IPython.display import display
from traitlets.config import Configurable

from .. import render
from ..client import ChatResult, ProxyClient
from ..context import Context, build_context
from ..context.frames import find_frames
from ..context.history import ErrorRecord, fill_references, format_exception
from ..context.inline import remember_schema
from ..errors import Escalation, ProxyError, SqlAIError, UsageError
from ..privacy import ContextPolicy, cached_me, effective_policy
from ..prompt import ask_messages
from ..replay import Replay, ReplayStore, resolve_mode, resolve_path
from ..sql.connections import DB, FramesDB, is_frame, jupysql_current, resolve
from ..sql.loop import SqlAIResult, run_chain, run_question
from ..sql.policy import SqlPolicy
from ..sql.schema import capture_schema
from .notebook import NotebookTracker, Origin, in_execute_request
from .references import resolve_reference
from .settings import AskSettings, SqlAISettings

__all__ = [
    "ContextRequest",
    "Session",
    "SqlCompleter",
    "mentions_error",
    "register_magics",
    "unregister_magics",
]

# Words that make a question about the last error: then the failed cell goes along.
_ERROR_WORDS = re.compile(
    r"\b(error|errors|fail|fails|failed|failing|exception|traceback|wrong|broken|crash\w*|"
    r"bug|why does|why do|doesn'?t work|not work\w*)\b",
    re.I,
)
_ERR_REF = re.compile(r"\{Err\[-?\d+\]\}")


def mentions_error(question: str) -> bool:
    """Does ``question`` ask about an error ("why does this fail", "traceback", ...)?"""
    return _ERROR_WORDS.search(question) is not None


# -- registration --------------------------------------------------------------------------


def register_magics(shell: Any, magics: type[Magics]) -> Magics:
    """Register ``magics`` on ``shell`` once (a class already registered is kept) and return
    the registered instance; the shell's :class:`Session` reads its settings from there."""
    current = shell.magics_manager.registry.get(magics.__name__)
    if isinstance(current, magics):
        return current
    instance = magics(shell=shell)
    shell.register_magics(instance)
    return instance


def unregister_magics(shell: Any, magics: type[Magics]) -> None:
    """Remove what :func:`register_magics` registered (its line and cell magics)."""
    instance = shell.magics_manager.registry.pop(magics.__name__, None)
    if instance is None:
        return
    for kind, names in instance.magics.items():
        table = shell.magics_manager.magics[kind]
        for name in names:
            table.pop(name, None)
    if instance in getattr(shell, "configurables", []):
        shell.configurables.remove(instance)


# -- context requests ----------------------------------------------------------------------


@dataclass
class ContextRequest:
    """What a question sends: the messages, and what went into them."""

    messages: list[dict[str, str]]  # system (with the context), user (the question)
    question: str  # after ``{var}`` references were filled in
    context: Context
    policy: ContextPolicy
    notes: list[str]  # for the user, not sent: the policy's, then the collectors'
    lang: str


# -- the %%sql_ai runner -------------------------------------------------------------------


@dataclass
class SqlCompleter:
    """The model call of the SQL loop: ``complete(messages) -> text``, with the 429 policy.

    ``first_answer``: the answer to the first call, already at hand (the chat panel's Run SQL
    starts from the answer shown). ``calls``: the model's answers, in order (for a footer).
    """

    session: Session
    client: ProxyClient
    model: str | None
    client_kind: str = "sql"
    batch: bool = False
    no_cache: bool = False
    replay: Replay | None = None
    first_answer: str | None = None
    calls: list[ChatResult] = field(default_factory=list)
    escalation: str | None = None  # set by an escalation chain: why this model is asked

    def __call__(self, messages: list[dict[str, str]]) -> str:
        if self.first_answer is not None:
            text, self.first_answer = self.first_answer, None
            return text
        res = self.session.chat(
            self.client,
            messages,
            client_kind=self.client_kind,
            batch=self.batch,
            model=self.model,
            temperature=0,
            no_cache=self.no_cache,
            replay=self.replay,
            escalation=self.escalation,
        )
        self.calls.append(res)
        return res.text


# -- the session ---------------------------------------------------------------------------

_SESSIONS: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()
_S = TypeVar("_S", bound=Configurable)  # a magic's settings class


class Session:
    """Everything %%ask, %%sql_ai and the chat panel decide alike, for one shell."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.errors: list[ErrorRecord] = []  # failed cells since load (``{Err[-1]}``)
        self.recent_frames: list[str] = []  # frame names, most recently (re)bound first
        self._frame_ids: dict[str, int] = {}
        self.recorded_here: set[str] = set()  # replay fingerprints this kernel recorded
        self._defaults: dict[type, Configurable] = {}
        self.notebook = NotebookTracker()  # which notebook and cell a request comes from

    @classmethod
    def of(cls, shell: Any = None) -> Session:
        """The session of ``shell`` (default: the running IPython shell), made on first use."""
        if shell is None:
            from IPython import get_ipython

            shell = get_ipython()
        session = _SESSIONS.get(shell)
        if session is None:
            session = _SESSIONS[shell] = cls(shell)
        return session

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

    def is_batch(self) -> bool:
        """Is this a batch run (nbconvert, papermill)? See the module docstring."""
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

    def pre_run_cell(self, info: Any) -> None:
        """IPython's ``pre_run_cell``: remember the running cell (its id and source)."""
        self.notebook.pre_run_cell(info)

    def origin(self, *, in_cell: bool | None = None) -> Origin:
        """Which notebook and cell a request made now comes from (see :mod:`.notebook`). A
        widget's callback (the chat panel) runs in no cell: then the notebook only."""
        if in_cell is None:
            in_cell = in_execute_request(self.shell)
        return self.notebook.origin(self.shell, self.ask.notebook, in_cell=in_cell)

    def cell_labels(self) -> dict[str, str]:
        """Each cell id of this notebook with the cell's first line, when its file can be read."""
        return self.notebook.cell_labels(self.shell, self.ask.notebook)

    def cell_label(self, magic: str, line: str) -> str:
        """How a failing replay names the cell: its In [n] and its magic line."""
        # IPython counts the running cell already: In [n] is execution_count - 1 meanwhile
        n = getattr(self.shell, "execution_count", None)
        n = n - 1 if isinstance(n, int) and n > 1 else n
        src = f"{magic} {line}".strip()[:120]
        return f"cell In [{n}] `{src}`" if n else f"cell `{src}`"

    def policy_for(self, client: ProxyClient | None) -> tuple[ContextPolicy, list[str]]:
        """The context policy in force for ``client``: the admin's (from ``GET me``, cached
        briefly, fail closed when unreadable) merged with ``RSQLMagic.context_policy``."""
        return effective_policy(client, self.ask.context_policy)

    def chat(
        self,
        client: ProxyClient,
        messages: list[dict[str, Any]],
        *,
        client_kind: str,
        batch: bool,
        on_retry: Callable[[], None] | None = None,
        origin: Origin | None = None,
        **kw: Any,
    ) -> ChatResult:
        """``client.chat(messages, **kw)`` under the 429 policy: in a batch run a 429 / 503
        with ``Retry-After`` is waited out (``RSQLMagic.batch_retries`` times, at most
        ``batch_max_wait`` seconds in all); otherwise, and beyond those bounds, it raises.
        ``on_retry`` runs before each retry (to drop a partial answer).

        The request says where it comes from: `origin`, else :meth:`origin` now (a worker
        thread passes the one its cell or widget had). With no model named, the user's default
        from ``GET me`` is sent (%%sql_ai's for ``client_kind="sql"``)."""
        origin = origin if origin is not None else self.origin()
        kw.update(notebook=origin.notebook, cell=origin.cell)
        if not kw.get("model"):
            kw["default_model"] = self.user_default_model(client, sql=client_kind == "sql")
        retries, max_wait = self.ask.batch_retries, self.ask.batch_max_wait
        waited = 0.0
        attempt = 0
        while True:
            try:
                return client.chat(messages, client_kind=client_kind, **kw)
            except ProxyError as e:
                retriable = e.status in (429, 503) and e.retry_after is not None
                if not (batch and retriable) or attempt >= retries:
                    raise
                wait = max(0.0, float(e.retry_after or 0))
                if waited + wait > max_wait:
                    e.message += (
                        f" (not waiting {wait:g}s more: RSQLMagic.batch_max_wait="
                        f"{max_wait:g}s, already waited {waited:g}s)"
                    )
                    raise
                print(
                    f"rsql: {e}; batch run: waiting {wait:g}s and retrying "
                    f"({attempt + 1}/{retries})",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(wait)
                waited += wait
                attempt += 1
                if on_retry is not None:
                    on_retry()

    # -- context -------------------------------------------------------------------------

    def post_run_cell(self, result: Any) -> None:
        """Track recently (re)defined frames and failed cells. Cheap: one pass, type checks."""
        try:
            ns = self.shell.user_ns
            for name, obj in find_frames(ns).items():
                oid = id(obj)
                if self._frame_ids.get(name) != oid:
                    self._frame_ids[name] = oid
                    if name in self.recent_frames:
                        self.recent_frames.remove(name)
                    self.recent_frames.insert(0, name)
            for gone in [n for n in self._frame_ids if n not in ns]:
                self._frame_ids.pop(gone, None)
                if gone in self.recent_frames:
                    self.recent_frames.remove(gone)
            err = result.error_in_exec or result.error_before_exec
            if err is not None:
                src = getattr(result.info, "raw_cell", "") or ""
                if not src.lstrip().startswith(("%%ask", "%ask")):  # our own failures: not context
                    self.errors.append(
                        ErrorRecord(
                            getattr(result, "execution_count", None),
                            src,
                            format_exception(err),
                            type(err).__name__,
                        )
                    )
                    del self.errors[:-20]
        except Exception:  # a hook must never break the user's cell
            pass

    def last_error(self) -> ErrorRecord | None:
        """The latest failed cell (or an error from before the extension was loaded)."""
        if self.errors:
            return self.errors[-1]
        exc = getattr(sys, "last_value", None)
        if exc is not None:
            return ErrorRecord(None, "", format_exception(exc), type(exc).__name__)
        return None

    def sql_source(self, name: str) -> tuple[str, Any]:
        """``(label, connection)`` for the schema collector from what ``--sql`` names: a
        variable, 'jupysql' (JupySQL's current connection: None), or a database URL."""
        ns = self.shell.user_ns
        name = name.strip()
        if name in ns:
            return (name, ns[name])
        if name.lower() in ("jupysql", "%sql", "%%sql", "sql"):
            return ("JupySQL current connection", None)
        if "://" in name:
            return (name, name)
        raise UsageError(
            f"--sql {name}: no such variable (expected a connection variable, a "
            "database URL, or 'jupysql')"
        )

    def context_request(
        self,
        question: str,
        client: ProxyClient | None,
        *,
        frames: list[str] | None = None,
        include_r: bool = False,
        sql: tuple[str, Any] | None = None,
        lang: str = "python",
        no_data: bool = False,
        named_frames_only: bool = False,
        references: bool = True,
        recent_error: bool = True,
    ) -> ContextRequest:
        """The messages for ``question``, with the live context under the admin's and the
        user's context policy for ``client`` and ``RSQLMagic``'s budget and sampling.

        ``frames``: names to include (else those named in the question, else the most recent,
        none of them when ``named_frames_only``). ``sql``: from :meth:`sql_source`.
        ``references``: fill in ``{var}`` references (what they show obeys the policy).
        The last error goes along when the question mentions one, or with ``recent_error``
        when it is the previous cell's, unless the question references ``{Err[...]}``.
        """
        ask = self.ask
        policy, notes = self.policy_for(client)
        refs_err = _ERR_REF.search(question) is not None
        if references:
            question = fill_references(
                question,
                lambda name, idx: resolve_reference(
                    name, idx, ns=self.shell.user_ns, errors=self.errors, policy=policy
                ),
            )
        last = self.last_error()
        count = getattr(self.shell, "execution_count", None) or 0
        use_err = (
            last is not None
            and not refs_err
            and (
                mentions_error(question)
                or (
                    recent_error
                    and last.execution_count is not None
                    and last.execution_count >= count - 1
                )
            )
        )
        ctx = build_context(
            question=question,
            ns=self.shell.user_ns,
            frames=frames,
            recent_frames=self.recent_frames,
            include_r=include_r,
            sql=sql,
            last_error=last if use_err else None,
            no_data=no_data,
            budget_tokens=ask.context_tokens,
            max_frames=0 if named_frames_only and frames is None else ask.max_frames,
            head_rows=ask.head_rows,
            stats_sample=ask.stats_sample,
            policy=policy,
            sql_policy=self.sql_policy(),
        )
        return ContextRequest(
            ask_messages(question, ctx.render(), lang),
            question,
            ctx,
            policy,
            notes + list(ctx.notes),
            lang,
        )

    # -- the next cell -------------------------------------------------------------------

    def cell_code(self, answer: str, lang: str) -> tuple[str, str] | None:
        """``(language, cell)`` for the answer's first code block (one in ``lang`` first):
        ``%%R`` / ``%%sql`` on top when rpy2's / JupySQL's magics are loaded. None: no code."""
        blocks = render.extract_code(answer, lang)
        if not blocks:
            return None
        blang, code = blocks[0]
        loaded: set[str] = getattr(getattr(self.shell, "extension_manager", None), "loaded", set())
        kind = render.normalize_lang(blang)
        if kind == "r" and "rpy2.ipython" in loaded:
            code = "%%R\n" + code
        elif kind == "sql" and "sql" in loaded:
            code = "%%sql\n" + code
        return blang or lang, code

    def insert_cell(
        self,
        code: str,
        lang: str,
        *,
        title: str = "Code for the next cell",
        batch: bool | None = None,
    ) -> bool:
        """Put ``code`` into a new cell below the running one. A batch run drops that, so the
        code is shown in the output under ``title`` instead. True when inserted."""
        if self.is_batch() if batch is None else batch:
            md = f"**{title}** (batch run: not inserted):\n\n" + render.code_block(code, lang)
            display(render.markdown_bundle(md), raw=True)  # type: ignore[no-untyped-call]  # IPython has no annotations; model code inside: made safe
            return False
        self.shell.set_next_input(code, replace=False)
        return True

    # -- the %%sql_ai runner -------------------------------------------------------------

    def resolve_connection(self, name: str | None) -> tuple[DB, str]:
        """The connection ``name`` means (a variable, URL, JupySQL alias, DataFrame or
        'frames'; None: JupySQL's current one, else the notebook's DataFrames), and how to
        name it in an emitted cell. Raises :class:`SqlAIError` (stage "connection")."""
        ns = self.shell.user_ns
        if name:
            if name in ns:
                obj = ns[name]
                if is_frame(obj):
                    return FramesDB({name: obj}), "frames"
                return resolve(obj), name
            if "://" in name:
                return resolve(name), repr(name)
            if name in ("frames", "pandas", "dataframes"):
                return FramesDB(self._frames()), "frames"
            try:  # a JupySQL alias (%sql sqlite:// --alias mydb)
                from sql.connection import ConnectionManager

                conn = ConnectionManager.connections.get(name)
                if conn is not None:
                    if conn is ConnectionManager.current:
                        return resolve(conn), ""
                    url = getattr(conn, "url", None)
                    return resolve(conn), repr(str(url)) if url else ""
            except ImportError:
                pass
            raise SqlAIError(
                f"CONN {name!r}: no such variable (expected a sqlite3 / DuckDB connection, a "
                "SQLAlchemy engine, a database URL, a JupySQL alias, a DataFrame, or 'frames')",
                attempts=[],
                sql="",
                stage="connection",
            )
        cur = jupysql_current()
        if cur is not None:
            return resolve(cur), ""
        frames = self._frames()
        if frames:
            return FramesDB(frames), "frames"
        raise SqlAIError(
            "no connection: name one (%%sql_ai conn), open one with JupySQL (%sql URL), or "
            "define pandas DataFrames to query them through DuckDB",
            attempts=[],
            sql="",
            stage="connection",
        )

    def _frames(self) -> dict[str, Any]:
        return {
            k: v for k, v in self.shell.user_ns.items() if not k.startswith("_") and is_frame(v)
        }

    def sql_policy(self) -> SqlPolicy:
        """What generated SQL may do: ``SqlAIMagics.allowed_functions`` and ``postgres_role``."""
        return SqlPolicy.make(
            self.sql.allowed_functions, self.sql.postgres_role, self.sql.max_result_bytes
        )

    def sql_completer(
        self,
        client: ProxyClient,
        *,
        model: str | None,
        client_kind: str = "sql",
        batch: bool = False,
        no_cache: bool = False,
        replay: Replay | None = None,
        first_answer: str | None = None,
        calls: list[ChatResult] | None = None,
    ) -> SqlCompleter:
        """The SQL loop's model call (:class:`SqlCompleter`); `calls` collects its answers."""
        return SqlCompleter(
            self,
            client,
            model=model,
            client_kind=client_kind,
            batch=batch,
            no_cache=no_cache,
            replay=replay,
            first_answer=first_answer,
            calls=[] if calls is None else calls,
        )

    def run_sql(
        self,
        question: str,
        db: DB,
        complete: Callable[[list[dict[str, str]]], str] | Sequence[tuple[str, SqlCompleter]],
        *,
        dialect: str | None = None,
        tables: list[str] | None = None,
        max_retries: int | None = None,
        allow_write: bool = False,
        dry_run: bool = False,
        explain: bool = False,
        max_rows: int | None = None,
        client: ProxyClient | None = None,
    ) -> SqlAIResult:
        """%%sql_ai's loop on ``db``: capture the schema, ask, parse, validate, guard and run,
        feeding failures back; ``SqlAIMagics``' settings fill what is not given. `complete`: one
        model's call, or a chain of ``(model, completer)`` pairs (``run_chain``). `client`'s
        context policy lets values steer the tables shown. Raises SqlAIError, ProxyError."""
        options = self._sql_options(
            db,
            dialect=dialect,
            tables=tables,
            max_retries=max_retries,
            allow_write=allow_write,
            dry_run=dry_run,
            explain=explain,
            max_rows=max_rows,
        )
        if client is not None:
            options["context_policy"] = self.policy_for(client)[0]
        if isinstance(complete, Sequence):
            chain = complete

            def escalate(i: int, e: Escalation) -> None:
                chain[i][1].escalation = e.stage  # the proxy's usage row says why

            return run_chain(question, db, chain, on_escalate=escalate, **options)
        return run_question(question, db, complete, **options)

    def _sql_options(
        self,
        db: DB,
        *,
        dialect: str | None,
        tables: list[str] | None,
        max_retries: int | None,
        allow_write: bool,
        dry_run: bool,
        explain: bool,
        max_rows: int | None,
    ) -> dict[str, Any]:
        sql, schema = self.sql, capture_schema(db)
        remember_schema(self.shell, db.label or db.kind, schema)  # for the editor's completions
        return dict(
            dialect=dialect,
            schema=schema,
            tables=tables,
            max_retries=sql.max_retries if max_retries is None else max_retries,
            allow_write=allow_write,
            dry_run=dry_run,
            explain=explain,
            max_rows=max_rows or sql.max_rows,
            timeout_s=sql.timeout or None,
            budget_chars=sql.schema_chars,
            policy=self.sql_policy(),
        )
