"""The image the lightweight components run in on Vertex AI: the project and its pinned dependencies, built and
pushed by Cloud Build, which sets the tag through ``COMPONENT_BASE_IMAGE``. Locally (kfp.local) components run
in the current environment and the image is only a name in the compiled YAML.

Read from the real environment only, never from a dotenv file: from one it would change what ``make compile``
writes to ``compiled/`` on one machine.
"""

from __future__ import annotations

import os

DEFAULT_COMPONENT_BASE_IMAGE = "europe-west1-docker.pkg.dev/your-gcp-project/defi-pipeline-images/components:latest"


def component_base_image() -> str:
    """``COMPONENT_BASE_IMAGE`` of the environment, else the documented placeholder that ``compiled/`` holds."""
    return os.environ.get("COMPONENT_BASE_IMAGE", DEFAULT_COMPONENT_BASE_IMAGE)
