"""rsql-eval's errors: both are :class:`~rsql_magic.errors.RSQLError`.

- :class:`EvalInputError`: a bad input (questions file, ``--db``, an option, the proxy or a
  model the proxy does not know). The command prints its message alone and exits 2.
"""

from __future__ import annotations

from rsql_magic.errors import RSQLError

__all__ = ["EvalError", "EvalInputError"]


class EvalError(RSQLError):
    """Base of rsql-eval's errors."""


class EvalInputError(EvalError):
    """A mistake in what rsql-eval was given; the message says which input and where."""
