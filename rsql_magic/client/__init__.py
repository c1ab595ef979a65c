"""The kernel's client of the rsql proxy: :class:`ProxyClient` finds the proxy and sends it
requests (:mod:`.proxy`); :class:`ChatResult` and :class:`ProxyError` are what its answers are
read into (:mod:`.answers`). Importers use this package's names, as from the one module it was.
"""

from ..discovery import find_local_server
from ..errors import ProxyError
from .answers import ChatResult
from .proxy import NO_PROXY_HELP, ProxyClient, notebook_header, valid_cell_id

__all__ = [
    "ChatResult",
    "ProxyClient",
    "ProxyError",
    "NO_PROXY_HELP",
    "find_local_server",
    "notebook_header",
    "valid_cell_id",
]
