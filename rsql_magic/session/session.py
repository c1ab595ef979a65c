"""The :class:`Session` of one shell (see :mod:`rsql_magic.session`): the request flow.

A session is made of parts, each its own module: the settings and what they decide
(:class:`~.config.SessionConfig`: the model, batch runs, the proxy client, replay, the course,
the policies), the notebook's cells (:class:`~.cells.Cells`: the running one, the failed ones,
the next one) and %%sql_ai's connections and schemas (:class:`~.sql_runner.SqlRunner`). What
is left here is what a question sends (:meth:`Session.context_request`, with the context it
gathers), the way it is sent (:class:`Route`, opened once per operation by
:func:`open_route`), and the magics registered on a shell, where its settings are read
(:func:`register_magics`). The operations built on it (asking, the SQL question, an agent turn)
are :mod:`rsql_magic.operations`.

Every operation used to open its way to the model itself: the cell's replay settings, the
proxy client (a missing proxy deferred while answers may come from the replay file), and the
check that the model asked for is one the admin allows, before anything is collected or sent.
:func:`open_route` is that set-up, once; :meth:`Route.chat` sends one request along it, straight
to the proxy client, with the request's origin and under the 429 / 503 policy.
"""

from __future__ import annotations

import re
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from IPython.core.magic import Magics

from ..client import ChatResult, ProxyClient
from ..context import Context, build_context
from ..context.history import fill_references
from ..context.references import resolve_reference
from ..errors import ProxyError
from ..privacy import ContextPolicy
from ..prompt import ask_messages
from ..render import replayed_notice
from ..replay import Replay
from .cells import Cells
from .config import DEFAULT_LOG_NOTICE, TUTOR_MEANS, SessionConfig
from .notebook import Origin
from .sql_runner import SqlRunner

__all__ = [
    "ContextRequest",
    "Route",
    "Session",
    "mentions_error",
    "open_route",
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


@dataclass
class ContextRequest:
    """What a question sends: the messages, and what went into them."""

    messages: list[dict[str, str]]  # system (with the context), user (the question)
    question: str  # after ``{var}`` references were filled in
    context: Context
    policy: ContextPolicy
    notes: list[str]  # for the user, not sent: the policy's, then the collectors'
    lang: str

    @property
    def unreadable(self) -> list[str]:
        """What the user named and could not be read: such a request is never sent."""
        return self.context.unreadable


_SESSIONS: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()


class Session:
    """Everything %%ask, %%sql_ai and the chat panel decide alike, for one shell: its parts
    (``config``, ``cells``, ``sql_runner``) and the request flow."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.config = SessionConfig(shell)
        self.cells = Cells(shell, self.config)
        self.sql_runner = SqlRunner(shell, self.config)
        # the course log's notice goes with the first answer of each kernel session
        self.log_notice_shown = False

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

    # -- what a question sends -----------------------------------------------------------

    def context_request(
        self,
        question: str,
        client: ProxyClient | None,
        *,
        frames: list[str] | None = None,
        include_r: bool = False,
        r_named: bool = False,
        r_frames: list[str] | None = None,
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
        none of them when ``named_frames_only``). ``include_r``: the R session, which
        ``r_named`` says the user asked for; ``r_frames``: R data frames named, described first.
        ``sql``: ``(label, connection)`` (:func:`rsql_magic.context.named.named_connection`).
        What the user named and cannot be read is in the context's ``unreadable``: the caller
        stops before sending.
        ``references``: fill in ``{var}`` references (what they show obeys the policy).
        The last error goes along when the question mentions one, or with ``recent_error``
        when it is the previous cell's, unless the question references ``{Err[...]}``.
        """
        ask = self.config.ask
        policy, notes = self.config.policy_for(client)
        refs_err = _ERR_REF.search(question) is not None
        if references:
            question = fill_references(
                question,
                lambda name, idx: resolve_reference(
                    name, idx, ns=self.shell.user_ns, errors=self.cells.errors, policy=policy
                ),
            )
        last = self.cells.last_error()
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
            recent_frames=self.cells.recent_frames,
            include_r=include_r,
            r_named=r_named,
            r_frames=r_frames,
            sql=sql,
            last_error=last if use_err else None,
            no_data=no_data,
            budget_tokens=ask.context_tokens,
            max_frames=0 if named_frames_only and frames is None else ask.max_frames,
            head_rows=ask.head_rows,
            stats_sample=ask.stats_sample,
            policy=policy,
            sql_policy=self.config.sql_policy(),
        )
        return ContextRequest(
            ask_messages(question, ctx.render(), lang),
            question,
            ctx,
            policy,
            notes + list(ctx.notes),
            lang,
        )

    # -- what goes with an answer ----------------------------------------------------------

    def answer_notices(
        self, result: ChatResult | None, client: ProxyClient | None, *, tutor: bool = True
    ) -> list[str]:
        """The plain lines shown over an answer: tutor mode with the admin's message, when the
        proxy answered as the course's tutor (``X-RSQL-Mode``) or ``GET me`` says the mode is in
        force (``tutor``: say it); the course log's notice with the first answer of this kernel
        session that the log keeps. A replayed answer reached no proxy: nothing is said of it
        here (what is, is :meth:`replay_notice`'s line)."""
        if result is not None and result.replayed_at:
            return []
        course = self.config.course(client)
        lines: list[str] = []
        if tutor and course.tutor is not None:
            lines.append(course.tutor.line())
        elif tutor and result is not None and result.mode == "tutor":
            lines.append(f"Tutor mode: {TUTOR_MEANS}.")
        logged = course.log is not None or (result is not None and result.course_log)
        if logged and not self.log_notice_shown and result is not None:
            self.log_notice_shown = True
            if course.log is not None:
                lines.append(course.log.line())
            else:
                lines.append(f"{DEFAULT_LOG_NOTICE} (course {result.course_log})")
        return lines

    def replay_notice(
        self,
        results: Sequence[ChatResult],
        client: ProxyClient | None,
        replay: Replay | None,
    ) -> list[str]:
        """The line over an answer whose every request came from the replay file (none
        otherwise), first in the cell: a recording, nothing sent, and whether the proxy
        answers now as far as this cell found out (issue 77: a batch run passing on a
        recording must not read as a proxy that works)."""
        recorded = [r.replayed_at for r in results if r.replayed_at]
        if not results or len(recorded) < len(results):
            return []
        return [
            replayed_notice(
                recorded,
                replay.store.path.name if replay is not None else None,
                mode=replay.mode if replay is not None else "auto",
                client=client,
            )
        ]


# -- the way an operation's requests reach the model ----------------------------------------


@dataclass(frozen=True)
class Route:
    """The way an operation's requests reach the model.

    ``client``: the proxy; ``batch``: a batch run (429s waited out, failures raise);
    ``replay``: the replay settings of the cell the requests come from (None: off);
    ``origin``: the notebook and cell, taken on the main thread for requests a worker thread
    makes (None: taken at each request); ``settles_replay``: the replay file is settled after a
    SQL question (the attempt that worked stands for the first request, as a %%sql_ai cell
    wants; rsql-eval replays every attempt as it was recorded).
    """

    client: ProxyClient
    batch: bool = False
    replay: Replay | None = None
    origin: Origin | None = None
    settles_replay: bool = False

    def chat(
        self,
        session: Session,
        messages: list[dict[str, Any]],
        *,
        client_kind: str,
        on_retry: Callable[[], None] | None = None,
        **kw: Any,
    ) -> ChatResult:
        """One request along this route: ``client.chat(messages, **kw)`` (``kw``:
        :meth:`ProxyClient.chat`'s options) under the 429 policy. In a batch run a 429 / 503
        with ``Retry-After`` is waited out (``RSQLMagic.batch_retries`` times, at most
        ``batch_max_wait`` seconds in all); otherwise, and beyond those bounds, it raises.
        ``on_retry`` runs before each retry (to drop a partial answer).

        The request says where it comes from: the route's `origin`, else the session's cell
        now. With no model named, the user's default from ``GET me`` is sent (%%sql_ai's for
        ``client_kind="sql"``)."""
        if self.replay is not None:
            kw["replay"] = self.replay
        origin = self.origin if self.origin is not None else session.cells.origin()
        kw.update(notebook=origin.notebook, cell=origin.cell)
        config = session.config
        if not kw.get("model"):
            kw["default_model"] = config.user_default_model(self.client, sql=client_kind == "sql")
        retries, max_wait = config.ask.batch_retries, config.ask.batch_max_wait
        waited = 0.0
        attempt = 0
        while True:
            try:
                return self.client.chat(messages, client_kind=client_kind, **kw)
            except ProxyError as e:
                retriable = e.status in (429, 503) and e.retry_after is not None
                if not (self.batch and retriable) or attempt >= retries:
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


def open_route(
    session: Session,
    *,
    kind: str,
    question: str,
    cell: str,
    models: Sequence[str | None],
    option: bool,
    replayed: bool = True,
    client: ProxyClient | None = None,
) -> Route:
    """The route for one operation of a cell or the chat panel.

    With `replayed`, the replay settings for `cell` (kind ``ask`` or ``sql``; off unless
    ``RSQLMagic.replay`` says otherwise); the proxy client (`client` when given), whose
    absence, with replay on, only matters once a request really needs it; then each of
    `models` checked against those ``GET me`` says this user may use now, unless every
    answer comes from the replay file: a model the admin does not allow fails here, before
    anything is collected or sent (`option`: the models came from ``--model``). Raises
    ProxyError (no proxy) and UsageError (a model not allowed).
    """
    config = session.config
    batch = config.is_batch()
    replay = config.replay(kind, question, cell) if replayed else None
    if client is None:
        client = config.replay_client(replay)
    elif replay is not None and client.token:
        replay.secrets = (client.token,)
    if replay is None or replay.mode != "only":
        config.check_models(client, models, option=option)
    return Route(client, batch, replay, settles_replay=kind == "sql" and replay is not None)


# -- the magics the session reads its settings from ------------------------------------------


def register_magics(shell: Any, magics: type[Magics]) -> Magics:
    """Register ``magics`` on ``shell`` once (a class already registered is kept) and return
    the registered instance; the shell's session reads its settings from there."""
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
