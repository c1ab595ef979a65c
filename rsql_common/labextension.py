"""Whether JupyterLab finds the frontend extension, for an install from a checkout.

A wheel carries the built extension as shared data (``share/jupyter/labextensions``); an
editable install from a checkout only has it once the frontend is built (``make setup`` runs
scripts/build-frontend.sh, which builds it and links it into the venv). Without it JupyterLab
shows no inline completions, no Accept and no status item, and nothing else says why: so the
kernel's ``%ask_status`` and the Jupyter server's log say so, naming the fix. Read the way
JupyterLab looks (every folder of ``jupyter_path("labextensions")``: ``JUPYTER_PATH``, the
user's data folder, the environment's and the system's); a folder added only through
``LabApp.extra_labextensions_path`` is not seen here.
"""

from __future__ import annotations

import sys
from pathlib import Path

NAME = "@rsql-assistant/jupyterlab"


def checkout_root() -> Path | None:
    """The checkout these packages are imported from, or None for an installed wheel (whose
    folder holds no ``frontend/`` to build)."""
    root = Path(__file__).resolve().parent.parent
    if (root / "frontend" / "package.json").is_file() and (
        root / "scripts" / "build-frontend.sh"
    ).is_file():
        return root
    return None


def labextension_dirs() -> list[str]:
    """The folders JupyterLab looks in for prebuilt extensions (none without jupyter_core)."""
    try:
        from jupyter_core.paths import jupyter_path
    except ImportError:  # jupyter_core comes with jupyter_server and ipykernel; be lenient
        return []
    return list(jupyter_path("labextensions"))


def missing_labextension_notice() -> str | None:
    """What is wrong and the fix, when running from a checkout whose frontend extension
    JupyterLab cannot find ("not built: ..."; the caller names the subject, the JupyterLab
    extension); None otherwise (a wheel install, or the extension found)."""
    root = checkout_root()
    if root is None:
        return None
    dirs = labextension_dirs()
    if not dirs or any((Path(d) / NAME / "package.json").is_file() for d in dirs):
        return None
    fix = f"`bash scripts/build-frontend.sh {sys.prefix}` (needs npm)"
    if Path(sys.prefix).resolve() == (root / ".venv").resolve():
        fix = f"`make setup` or {fix}"
    return (
        f"not built: JupyterLab finds no {NAME} (looked in {', '.join(dirs)}), so it shows no "
        f"inline completions, no Accept and no status item. Build it in the checkout {root}: "
        f"{fix}, then reload JupyterLab's page"
    )
