"""Admission and limits: whether a request may go out now, and what it may use.

``policy_windows`` says which admin window holds a caller now (an exam turning the assistant
off, a lab hour with its own models); ``entitlements`` which models a caller may use and their
defaults; ``limiter`` admits a request against the caller's windows, concurrency leases and
budgets in one atomic step, and settles the budget when it ends. ``shared_state`` is the
interface the state backends (``jupyter_server_ext.state``: memory, Redis) implement, so
replicas share one set of limits.
"""
