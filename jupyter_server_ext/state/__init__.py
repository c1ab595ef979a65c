"""State backends for per-user limits, leases and budgets: memory (one process) or Redis.

Both answer the same questions in one atomic step each: ``admit`` checks every window, lease
and budget of a request before counting any of them, so a refused request consumes nothing.
"""

from .base import Admission, BudgetCheck, LeaseCheck, StateBackend, WindowCheck
from .memory import MemoryState

__all__ = ["Admission", "BudgetCheck", "LeaseCheck", "MemoryState", "StateBackend", "WindowCheck"]
