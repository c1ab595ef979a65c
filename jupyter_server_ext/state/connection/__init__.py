"""Talking to Redis: the Lua scripts that make each step atomic (``scripts``), one pipelined
connection for them (``pipelined``), and the batched writes of a request's end (``batch``)."""
