"""Per-user limits, leases, budgets and the policy windows' table: ``memory`` for one process,
``redis`` for replicas. Both implement the engine's ``admission.shared_state.StateBackend``."""
