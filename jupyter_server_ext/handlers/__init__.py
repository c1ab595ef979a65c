"""The HTTP handlers both hosts serve.

``base`` holds what every handler shares (the proxy's context, requests in flight, JSON
errors, a POST answered as JSON or a stream); ``endpoints`` OpenAI's v1 endpoints and the
caller's own (status, ``me``, ``me/cost``, redaction); ``apis`` the other APIs (Responses,
Anthropic Messages, the editor's inline completions); ``admin`` the admin endpoints. The
routes (``jupyter_server_ext.routes``) gather them, and the dashboard's and MCP's, for a host.
"""
