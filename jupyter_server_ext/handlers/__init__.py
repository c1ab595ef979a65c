"""The HTTP handlers both hosts serve, and their routes.

``base`` holds what every handler shares (the proxy's context, requests in flight, JSON
errors) and the OpenAI-compatible endpoints (chat completions, completions, embeddings,
models, the caller's own status and costs, redaction); ``apis`` the other APIs (Responses,
Anthropic Messages, the editor's inline completions); ``admin`` the admin endpoints;
``routes`` gathers them (and the dashboard's and MCP's) for one host.
"""
