"""Project settings in one place, read from the environment (and ``.env`` for local use).

Only names and locations live here: never a password. The values a pipeline run needs are compiled into the
pipeline as parameters or component images; the database password is named by a secret reference.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_DIR = REPO_ROOT / ".local"
COMPILED_DIR = REPO_ROOT / "compiled"


def _load_dotenv(path: Path = REPO_ROOT / ".env") -> None:
    """KEY=VALUE lines of ``.env`` fill variables the environment does not already set."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            os.environ.setdefault(key.strip(), value.strip().strip("'\""))


_load_dotenv()

# The image the lightweight components run in on Vertex AI: the project and its pinned dependencies, built
# and pushed by Cloud Build, which sets the tag. Locally (kfp.local) components run in the current environment.
COMPONENT_BASE_IMAGE = os.environ.get("COMPONENT_BASE_IMAGE", "python:3.11-slim")
