"""The two roots both of our user-side packages raise under: every exception the kernel
(:mod:`rsql_magic.errors`) or the SQL package (:mod:`rsql_sql.errors`) raises on purpose is an
:class:`RSQLError`, and every warning either gives is an :class:`RSQLWarning`.

They live here, apart from both, so that ``except RSQLError`` in a notebook catches a refused
statement from :mod:`rsql_sql` as it catches a failed proxy call from the kernel, while the SQL
package, which the proxy's MCP endpoint runs too, imports nothing of the kernel. Warnings have a
root of their own (as urllib3's and requests' do), so a warning turned into an error by a filter
is never caught as one of ours.
"""

from __future__ import annotations

__all__ = ["RSQLError", "RSQLWarning"]


class RSQLError(Exception):
    """Base of the errors rsql_magic and rsql_sql raise on purpose."""


class RSQLWarning(UserWarning):
    """Base of the warnings rsql_magic and rsql_sql give."""
