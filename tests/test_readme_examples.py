"""The README's "Testing a component" examples run as written (a copy in a test would drift from the README)."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _section_code(heading: str) -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = re.split(r"\n#{2,3} ", text.split(f"\n{heading}\n", 1)[1], maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_testing_a_component_examples_run(monkeypatch):
    blocks = _section_code("### Testing a component")
    assert len(blocks) == 2 and "python_func" in blocks[0] and "local.init" in blocks[1]
    monkeypatch.chdir(REPO_ROOT)  # the kfp.local subprocess imports components from the working directory
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
