"""OpenAI's Responses API, as clients speak it to the proxy (the Agents SDK, Codex): ``request``
(the body into the chat form), ``answer`` (the chat answer as a Response), ``stream`` (a chat
stream as the Responses API's typed events)."""
