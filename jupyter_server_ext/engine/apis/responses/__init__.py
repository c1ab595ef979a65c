"""OpenAI's Responses API, as clients speak it to the proxy (the Agents SDK, Codex): ``request``
(the body into the chat form), ``answer`` (the chat answer as a Response), ``stream`` (a chat
stream as the Responses API's typed events), ``usage`` (what a Response sent as it came used,
and its hosted calls), ``native`` (what one sent as it came needs: nothing stored at the
provider, its hosted tools) and ``stored`` (stored responses, each its owner's, in the state
backend)."""
