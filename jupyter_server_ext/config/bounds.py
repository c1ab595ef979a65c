"""The ranges a number setting may declare on its trait, ``.tag(config=True, bound=">= 0")``.

Checked by ``RSQLProxy.range_problems`` (the traits check only the types), one line each, for
every trait of ``c.RSQLProxy`` and of the settings classes it is built from; a bound's text is
what the message says the number must be.
"""

from __future__ import annotations

from collections.abc import Callable

BOUNDS: dict[str, Callable[[float], bool]] = {
    ">= 0": lambda v: v >= 0,
    "> 0": lambda v: v > 0,
    ">= 1": lambda v: v >= 1,
    "positive": lambda v: v > 0,
    ">= 1024": lambda v: v >= 1024,
    # json's C decoder recurses once per level: past several hundred it hits Python's limit
    "from 2 to 500": lambda v: 2 <= v <= 500,
    "from 1 to 4096": lambda v: 1 <= v <= 4096,
    "from 0 to 20": lambda v: 0 <= v <= 20,
    "between 0 and 1": lambda v: 0 < v < 1,
}
