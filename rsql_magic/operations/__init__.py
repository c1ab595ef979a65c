"""The kernel's operations: each one thing the assistant does, as an object taking one request.

- ``asking`` (:class:`AskOperation`, :class:`AskRequest`): a question with the notebook's live
  context; ``%%ask`` and the chat panel's Send.
- ``sql_question`` (:class:`SqlOperation`, :class:`SqlRequest`): a question about a database,
  answered with checked read-only SQL and its rows (:func:`rsql_sql.loop.run_question`);
  ``%%sql_ai``, the chat panel's Run SQL and rsql-eval.
- ``agent_turn`` (:class:`AgentOperation`, :class:`AgentRequest`): one agent turn over
  read-only tools; ``%%ask --agent``, the chat panel's agent mode and rsql-eval ``--agent``.

Each sends along a :class:`~rsql_magic.session.Route` (:func:`~rsql_magic.session.open_route`,
opened once per operation: the cell's replay, the proxy client and the model check), re-exported
here for the callers that build one themselves.

The magics, the chat panel and rsql-eval build a request and hand it over; the set-up they
share (replay, model checks, the session's request flow, the SQL loop's options and the
schema's one capture) is done here, once. What they show is their own.
"""

from rsql_magic.session import Route, open_route

from .agent_turn import AgentOperation, AgentRequest
from .asking import (
    AskOperation,
    AskRequest,
    ContextChoice,
    context_request,
    named_context,
    unreadable_message,
)
from .sql_question import SqlCompleter, SqlOperation, SqlRequest

__all__ = [
    "AgentOperation",
    "AgentRequest",
    "AskOperation",
    "AskRequest",
    "ContextChoice",
    "Route",
    "SqlCompleter",
    "SqlOperation",
    "SqlRequest",
    "context_request",
    "named_context",
    "open_route",
    "unreadable_message",
]
