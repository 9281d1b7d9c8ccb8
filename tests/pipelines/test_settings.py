"""Settings: importing them changes nothing; the dotenv files are loaded where the command line starts."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines.settings import REPO_ROOT, load_dotenv


def test_importing_the_settings_and_the_components_leaves_the_environment_alone():
    script = (
        "import os; before = dict(os.environ); import pipelines.settings, pipelines.pool_pipeline; "
        "print(sorted(set(os.environ.items()) ^ set(before.items())))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_load_dotenv_fills_only_unset_variables_and_never_the_image(tmp_path, monkeypatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# a comment\nSETTINGS_TEST_NEW='from file'\nSETTINGS_TEST_SET=from file\nCOMPONENT_BASE_IMAGE=img:file\n"
    )
    monkeypatch.setenv("SETTINGS_TEST_SET", "from env")
    monkeypatch.delenv("SETTINGS_TEST_NEW", raising=False)
    monkeypatch.delenv("COMPONENT_BASE_IMAGE", raising=False)

    load_dotenv((dotenv, tmp_path / "missing.env"))

    assert os.environ["SETTINGS_TEST_NEW"] == "from file"
    assert os.environ["SETTINGS_TEST_SET"] == "from env"
    assert "COMPONENT_BASE_IMAGE" not in os.environ
    monkeypatch.delenv("SETTINGS_TEST_NEW")


def test_components_never_import_the_pipelines_package():
    offenders = [
        path.name
        for path in (REPO_ROOT / "components").glob("*.py")
        if "from pipelines" in path.read_text() or "import pipelines" in path.read_text()
    ]
    assert offenders == []
