"""State backends, by concept as the engine is: ``admission`` (per-user limits, leases and
budgets: memory for one process, Redis for replicas), ``upstreams`` (the key pool shared
through Redis), ``monitoring`` (the shared alert ledger), and ``connection`` (Redis scripts,
its pipelined connection and batched writes).

Both admission backends implement
``jupyter_server_ext.engine.admission.shared_state.StateBackend`` and answer the same questions
in one atomic step each: ``admit`` checks every window, lease and budget of a request before
counting any of them, so a refused request consumes nothing.
"""

from .admission.memory import MemoryState

__all__ = ["MemoryState"]
