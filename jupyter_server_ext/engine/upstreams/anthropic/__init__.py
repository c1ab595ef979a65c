"""The Anthropic upstream kind: a chat request spoken to Anthropic's Messages API, and its
answers, errors and rate-limit headers read back as OpenAI's (``kinds.AnthropicKind`` sends
them). ``request`` holds the request's side and the table of what each OpenAI field becomes,
``answer`` the answer's (a Message and the stream's events), ``http`` the envelope (error bodies,
``anthropic-ratelimit-*`` headers), ``stop_reasons`` why an answer ended in both APIs' words.
The Messages format itself, which clients also speak to the proxy, is ``apis.messages``; its
answers share ``stop_reasons`` and ``request.tool_use_block`` with this kind."""

from .answer import StreamTranslator, chat_completion
from .http import openai_error, rate_headers
from .request import ANTHROPIC_VERSION, Untranslatable, messages_request

__all__ = [
    "ANTHROPIC_VERSION",
    "StreamTranslator",
    "Untranslatable",
    "chat_completion",
    "messages_request",
    "openai_error",
    "rate_headers",
]
