"""compiled/ must be what compiling the current source produces (`make compile` regenerates it)."""

from __future__ import annotations

from pipelines.cli import compile_pipelines
from pipelines.settings import COMPILED_DIR


def test_compiled_yaml_matches_the_source(tmp_path):
    fresh = compile_pipelines(tmp_path)
    assert fresh, "no pipeline was compiled"
    for path in fresh:
        committed = COMPILED_DIR / path.name
        assert committed.exists(), f"{committed} is missing: run `make compile` and commit compiled/"
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run `make compile` and commit it"
    stray = {p.name for p in COMPILED_DIR.glob("*.yaml")} - {p.name for p in fresh}
    assert not stray, f"compiled/ holds files no pipeline produces: {sorted(stray)}"
