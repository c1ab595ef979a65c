"""State backends for per-user limits, leases and budgets: memory (one process) or Redis.

Both implement ``jupyter_server_ext.engine.state.StateBackend`` and answer the same questions
in one atomic step each: ``admit`` checks every window, lease and budget of a request before
counting any of them, so a refused request consumes nothing.
"""

from .memory import MemoryState

__all__ = ["MemoryState"]
