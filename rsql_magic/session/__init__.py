"""One kernel-side session per IPython shell: what %%ask, %%sql_ai and the chat panel share.

:meth:`Session.of` gives the shell's session. It is made of parts, each in its own module:

- the settings: :class:`AskSettings` (configured as ``RSQLMagic.<name>``) and
  :class:`SqlAISettings` (``SqlAIMagics.<name>``); each magic class inherits its settings
  class, so every default is written once, in the trait (:mod:`.config`);
- what the settings decide (``Session.config``, :mod:`.config`): the settings in force, the
  model choice (``model``: one fallback chain, ending in the user's default from ``GET me``)
  and the check that a model is one the admin allows (``check_models``), batch detection
  (``is_batch``), the proxy client (``client``, the replay and preview variants), and the
  context and SQL policies (``policy_for``, ``sql_policy``);
- the notebook's cells (``Session.cells``, :mod:`.cells`): which notebook and cell a request
  comes from (``origin``, :mod:`.notebook`), sent with every request so the proxy attributes
  its cost there; the frames and failed cells the context draws on (``last_error``); putting
  code into the next cell (``insert_cell``), with who wrote it for the frontend to mark
  (``Provenance``, and ``CellChannel``, which inserts cells from a widget's click);
- the course the user is in (``SessionConfig.course``, :mod:`.config`): tutor mode and the
  course log, as ``GET me`` says, and what goes over an answer (``Session.answer_notices``);
- %%sql_ai's connections and schemas (``Session.sql_runner``, :mod:`.sql_runner`:
  ``choose_connection``: what CONN names, or the default explained, ``ConnectionChoice``;
  ``capture``: the one schema capture of the SQL path, and the SQL
  loop's options from the settings), on which the SQL question operation
  (:mod:`rsql_magic.operations.sql_question`) stands;
- what a question sends, on :class:`Session` itself (:mod:`.session`): context requests
  (:meth:`Session.context_request`: frames, R, SQL schema, the last error, ``{var}``
  references, under the token budget and the policy), and the way an operation sends them
  (:class:`Route`, opened once per operation by :func:`open_route`: the cell's replay, the
  proxy client and the model check), under the 429 / 503 policy.

Batch runs. ``set_next_input`` is dropped by nbclient (so by nbconvert and papermill), and
nobody is there to read a rate-limit message. A run counts as batch when
``RSQLMagic.batch`` says so ("yes"/"no"), else when env ``RSQL_BATCH`` is set (1/0), else
when the kernel's current execute request has ``allow_stdin=False``: nbclient sends that
(``kc.allow_stdin = False``), while JupyterLab, Notebook 7, VS Code and jupyter console send
``allow_stdin=True``. A plain terminal IPython (no kernel) is interactive. In batch runs
answers are not streamed, code for the next cell is shown in the output, 429 / 503 answers
are waited out per ``Retry-After`` (bounded by ``batch_retries`` and ``batch_max_wait``), and
every final failure raises, so ``jupyter nbconvert --execute`` fails.
"""

from ..context.references import resolve_reference
from .cells import Provenance
from .config import AskSettings, Course, CourseLog, SqlAISettings, TutorMode
from .session import (
    ContextRequest,
    Route,
    Session,
    mentions_error,
    open_route,
    register_magics,
    unregister_magics,
)

__all__ = [
    "AskSettings",
    "ContextRequest",
    "Course",
    "CourseLog",
    "Provenance",
    "Route",
    "Session",
    "SqlAISettings",
    "TutorMode",
    "mentions_error",
    "open_route",
    "register_magics",
    "resolve_reference",
    "unregister_magics",
]
