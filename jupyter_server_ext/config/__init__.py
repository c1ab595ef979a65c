"""The proxy's configuration: ``c.RSQLProxy`` and what checks it.

``proxy`` is the ``RSQLProxy`` configurable both hosts read; its features' settings are base
classes of it, one module each (``inline``: the editor's inline completions; ``requests``;
``monitoring``; ``mcp``: the admin's MCP connections); ``check`` finds every configuration
problem at once, for ``--check-config`` and both hosts' start-up. Nothing here serves a
request.
"""
