"""Jar provisioning for local Spark: Maven coordinates resolved from Maven Central into an ignored cache.

The first run resolves each coordinate (and its transitive dependencies) with Apache Ivy — the Ivy that
pyspark itself bundles, run standalone — and writes a manifest of the retrieved files. Later runs read the
manifest and need no network. On Dataproc the same jars are staged in GCS and passed as ``jar_file_uris``;
:data:`JDBC_DRIVER` and the SynapseML coordinates are the one list both places use.

``spark.jars.packages`` would resolve too, but it goes through Ivy on every session start (and needs the
network for its resolution report); the manifest makes the offline rerun explicit and testable.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.environ.get("SPARK_JAR_CACHE", Path(__file__).resolve().parents[2] / ".cache" / "jars"))
MAVEN_CENTRAL = "https://repo1.maven.org/maven2/"


@dataclass(frozen=True)
class MavenArtifact:
    group: str
    artifact: str
    version: str
    # False: this artifact alone. SynapseML's transitive closure drags in 26 jars (28 MB), ten of them older
    # copies of what pyspark ships (slf4j-api 1.7 on the classpath silences Spark's logging) and test-only jars;
    # the four jars LightGBM needs are listed explicitly instead.
    transitive: bool = True
    # The jar also carries Python modules (SynapseML's Python API). On Dataproc jar_file_uris reach the JVM only,
    # so such a jar must be listed in python_file_uris as well.
    python: bool = False

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    @property
    def file_name(self) -> str:
        """The jar's name as retrieved here and as staged in GCS: ``<group>__<artifact>-<version>.jar``."""
        return f"{self.group}__{self.artifact}-{self.version}.jar"

    def cache_folder(self, cache_dir: Path = DEFAULT_CACHE) -> Path:
        """Where :func:`resolve` retrieves this artifact and its dependencies."""
        return cache_dir / f"{self.group}__{self.artifact}-{self.version}"


# 42.7.2 fixed CVE-2024-1597 (SQL injection with preferQueryMode=simple); 42.7.8 is current and tested here.
# transitive=False: its one dependency (checker-qual) holds annotations only, and Dataproc gets this jar alone.
JDBC_DRIVER = MavenArtifact("org.postgresql", "postgresql", "42.7.8", transitive=False)

# SynapseML 1.1.3 for Spark 3.5 / Scala 2.12: the LightGBM module, its core, the native LightGBM library
# (x86_64 .so files; needs the system's libgomp) and spray-json (NoClassDefFoundError spray/json/JsonFormat
# without it). The "synapseml_2.12" bundle is not on Maven Central (only 1.1.0 is).
SYNAPSEML_LIGHTGBM = [
    MavenArtifact("com.microsoft.azure", "synapseml-lightgbm_2.12", "1.1.3", transitive=False, python=True),
    MavenArtifact("com.microsoft.azure", "synapseml-core_2.12", "1.1.3", transitive=False, python=True),
    MavenArtifact("com.microsoft.ml.lightgbm", "lightgbmlib", "3.3.510", transitive=False),
    MavenArtifact("io.spray", "spray-json_2.12", "1.3.5", transitive=False),
]
# The Python modules the forecast imports from those jars. `synapse` is a namespace package split across
# synapseml-core (synapse.ml.core, …) and synapseml-lightgbm (synapse.ml.lightgbm): both jars are needed.
SYNAPSEML_PYTHON_MODULES = ["synapse.ml.lightgbm"]
# Classes whose absence makes a LightGBM fit fail late and obscurely ("'JavaPackage' object is not callable").
SYNAPSEML_CLASSES = [
    "com.microsoft.azure.synapse.ml.lightgbm.LightGBMRegressor",
    "com.microsoft.ml.lightgbm.lightgbmlib",
    "spray.json.JsonFormat",
]


class JarResolutionError(RuntimeError):
    pass


_IVY_SETTINGS = """<ivysettings>
  <settings defaultResolver="central"/>
  <resolvers><ibiblio name="central" m2compatible="true" root="{root}"/></resolvers>
</ivysettings>
"""


def _ivy_jar() -> Path:
    import pyspark

    candidates = sorted((Path(pyspark.__file__).parent / "jars").glob("ivy-*.jar"))
    if not candidates:
        raise JarResolutionError("pyspark's bundled Ivy jar was not found; is pyspark installed completely?")
    return candidates[-1]


def resolve(artifact: MavenArtifact, cache_dir: Path = DEFAULT_CACHE) -> list[Path]:
    """Returns local jar paths for ``artifact`` and its dependencies, downloading them on first use."""
    target = artifact.cache_folder(cache_dir)
    manifest = target / "manifest.json"
    if manifest.exists():
        jars = [target / name for name in json.loads(manifest.read_text())["jars"]]
        if all(jar.exists() for jar in jars):
            return jars
    target.mkdir(parents=True, exist_ok=True)
    settings = cache_dir / "ivysettings.xml"
    repository = os.environ.get("MAVEN_REPOSITORY", MAVEN_CENTRAL)  # a mirror, where Maven Central is not reachable
    settings.write_text(_IVY_SETTINGS.format(root=repository))
    log.info("resolving %s from Maven (first run only; cached in %s)", artifact.coordinates, target)
    command = [
        "java", "-cp", str(_ivy_jar()), "org.apache.ivy.Main",
        "-settings", str(settings), "-cache", str(cache_dir / "ivy"),
        "-dependency", artifact.group, artifact.artifact, artifact.version,
        "-confs", "default",
        *([] if artifact.transitive else ["-notransitive"]),
        "-retrieve", str(target / "[organisation]__[artifact]-[revision](-[classifier]).[ext]"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or "UNRESOLVED DEPENDENCIES" in result.stdout:
        raise JarResolutionError(
            f"could not resolve {artifact.coordinates} from {repository}. Fetch it once with network access "
            f"(the jars are then cached in {cache_dir}), or copy the jars there.\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    jars = sorted(target.glob("*.jar"))
    if not any(p.name == artifact.file_name for p in jars):
        raise JarResolutionError(f"Ivy reported success but {artifact.file_name} is not in {target}")
    manifest.write_text(json.dumps({"coordinates": artifact.coordinates, "jars": [p.name for p in jars]}, indent=1))
    return jars


def resolve_all(artifacts: list[MavenArtifact], cache_dir: Path = DEFAULT_CACHE) -> list[Path]:
    seen: dict[str, Path] = {}
    for artifact in artifacts:
        for jar in resolve(artifact, cache_dir):
            seen.setdefault(jar.name, jar)
    return list(seen.values())


def require_classes(spark, classes: list[str], artifacts: list[MavenArtifact]) -> None:
    """Fails early, naming the Maven coordinates, when a class of ``classes`` is not on Spark's classpath."""
    utils = spark._jvm.org.apache.spark.util.Utils
    missing = []
    for name in classes:
        try:
            utils.classForName(name, False, False)
        except Exception:  # py4j wraps ClassNotFoundException / NoClassDefFoundError
            missing.append(name)
    if missing:
        coordinates = ", ".join(a.coordinates for a in artifacts)
        raise JarResolutionError(
            f"classes missing from the Spark classpath: {', '.join(missing)}. They come from {coordinates}: "
            "locally they are fetched into .cache/jars on first use (network needed once); on Dataproc pass them "
            "as jar_file_uris (staged in GCS by Cloud Build)."
        )


def require_python_modules(modules: list[str], artifacts: list[MavenArtifact]) -> None:
    """Fails early, naming the jars that carry them, when a module of ``modules`` cannot be imported.

    SynapseML's Python code lives in its jars. spark-submit puts jars on the Python path only for --packages,
    never for --jars (Dataproc's jar_file_uris), so without the jars in --py-files (python_file_uris) the
    import fails at the first fit, after the metrics were already promoted.
    """
    import importlib

    failures = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            failures.append(f"{module} ({error})")
    if failures:
        files = ", ".join(a.file_name for a in artifacts if a.python)
        raise JarResolutionError(
            f"Python modules cannot be imported: {'; '.join(failures)}. Their code ships inside {files}: on "
            "Dataproc list those jars in python_file_uris (jar_file_uris reach the JVM only); with spark-submit "
            "pass them to --py-files."
        )
