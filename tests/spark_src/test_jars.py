"""Jar provisioning: the first resolution downloads, later ones work from the cache with no network."""

from __future__ import annotations

import re
import shutil

import pytest

from spark_src.common import jars


def test_cached_jars_resolve_offline(tmp_path, monkeypatch):
    # Resolve once into the shared cache (downloads on a fresh machine), then copy it to a private cache.
    cached = jars.resolve(jars.JDBC_DRIVER)
    shutil.copytree(cached[0].parent, tmp_path / cached[0].parent.name)
    # An unreachable repository and no java on PATH: a cache hit must need neither.
    monkeypatch.setenv("MAVEN_REPOSITORY", "http://127.0.0.1:9/unreachable/")
    monkeypatch.setenv("PATH", str(tmp_path))

    offline = jars.resolve(jars.JDBC_DRIVER, cache_dir=tmp_path)

    assert [p.name for p in offline] == [p.name for p in cached]
    assert any(p.name == "org.postgresql__postgresql-42.7.8.jar" for p in offline)


def test_unresolvable_artifact_names_the_coordinates(tmp_path, monkeypatch):
    monkeypatch.setenv("MAVEN_REPOSITORY", "http://127.0.0.1:9/unreachable/")
    missing = jars.MavenArtifact("org.example", "does-not-exist", "0.0.1", transitive=False)
    with pytest.raises(jars.JarResolutionError, match=re.escape("org.example:does-not-exist:0.0.1")):
        jars.resolve(missing, cache_dir=tmp_path)
