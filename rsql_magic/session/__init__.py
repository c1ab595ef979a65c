"""One kernel-side session per IPython shell: what %%ask, %%sql_ai and the chat panel share.

:meth:`Session.of` gives the shell's session. It owns

- the settings: :class:`AskSettings` (configured as ``RSQLMagic.<name>``) and
  :class:`SqlAISettings` (``SqlAIMagics.<name>``); each magic class inherits its settings
  class, so every default is written once, in the trait;
- the model choice (:meth:`Session.model`: one fallback chain, ending in the user's default
  from ``GET me``) and the check that a model is one the admin allows
  (:meth:`Session.check_models`);
- the proxy client (:meth:`Session.client`, the replay and preview variants);
- which notebook and cell a request comes from (:meth:`Session.origin`, :mod:`.notebook`),
  sent with every request so the proxy attributes its cost there;
- batch detection (:meth:`Session.is_batch`) and the 429 / 503 policy (:meth:`Session.chat`);
- the context policy (:meth:`Session.policy_for`) and context requests
  (:meth:`Session.context_request`: frames, R, SQL schema, the last error, ``{var}``
  references, under the token budget and the policy);
- putting code into the next cell (:meth:`Session.insert_cell`);
- the %%sql_ai runner (:meth:`Session.resolve_connection`, :meth:`Session.sql_completer`,
  :meth:`Session.run_sql`), which the chat panel's Run SQL button reuses.

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

from .references import resolve_reference
from .session import (
    ContextRequest,
    Session,
    SqlCompleter,
    mentions_error,
    register_magics,
    unregister_magics,
)
from .settings import AskSettings, SqlAISettings

__all__ = [
    "AskSettings",
    "ContextRequest",
    "Session",
    "SqlAISettings",
    "SqlCompleter",
    "mentions_error",
    "register_magics",
    "resolve_reference",
    "unregister_magics",
]
