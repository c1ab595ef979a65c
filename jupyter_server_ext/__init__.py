"""The rsql proxy: an OpenAI-compatible endpoint that rotates provider keys and keeps users
inside fair limits. Hosted by a Jupyter server (``extension``) or as a JupyterHub service."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .extension import RSQLProxyExtension

    return [{"module": "jupyter_server_ext", "app": RSQLProxyExtension}]
