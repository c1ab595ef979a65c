"""Where an operation's requests go, and how: :class:`Route`, opened once per operation.

Every operation used to open its way to the model itself: the cell's replay settings, the
proxy client (a missing proxy deferred while answers may come from the replay file), and the
check that the model asked for is one the admin allows, before anything is collected or sent.
:func:`open_route` is that set-up, once; :meth:`Route.chat` sends one request along it, straight
to the proxy client, with the request's origin and under the 429 / 503 policy.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rsql_magic.client import ChatResult, ProxyClient
from rsql_magic.errors import ProxyError
from rsql_magic.replay import Replay
from rsql_magic.session import Session
from rsql_magic.session.notebook import Origin

__all__ = ["Route", "open_route"]


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
