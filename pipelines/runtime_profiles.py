"""Dataproc Serverless runtime profiles: runtime version, its Spark/Scala line, the jars built for that line, and
the batch properties of each job. One place; the pipeline, Cloud Build (jar staging) and the tests read it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from spark_src.common.jars import JDBC_DRIVER, SYNAPSEML_LIGHTGBM, MavenArtifact

_SCALA_SUFFIX = re.compile(r"_(2\.1[0-3])$")


@dataclass(frozen=True)
class RuntimeProfile:
    name: str
    runtime_version: str
    spark_version: str
    scala_version: str
    python_version: str
    jars: tuple[MavenArtifact, ...]
    # Properties per spark_src job. The LightGBM batch runs on a fixed set of executors: dynamic allocation
    # would add or remove executors mid-fit, and LightGBM's workers must all be up at the same time.
    job_properties: dict[str, dict[str, str]] = field(default_factory=dict)

    def jar_file_names(self) -> list[str]:
        """File names of the staged jars (as Ivy retrieves them: ``<group>__<artifact>-<version>.jar``)."""
        return [a.file_name for a in self.jars]

    def python_jar_file_names(self) -> list[str]:
        """The staged jars that also carry Python modules (SynapseML's): they go in python_file_uris too."""
        return [a.file_name for a in self.jars if a.python]


class ProfileError(ValueError):
    pass


def check_profile(profile: RuntimeProfile) -> RuntimeProfile:
    """Refuses a profile whose Scala-suffixed jars do not match the runtime's Scala version.

    The original plan paired Dataproc runtime 2.1 (Scala 2.13) with ``synapseml_2.12``: such jars cannot load.
    """
    for artifact in profile.jars:
        match = _SCALA_SUFFIX.search(artifact.artifact)
        if match and match.group(1) != profile.scala_version:
            raise ProfileError(
                f"profile {profile.name}: {artifact.coordinates} is built for Scala {match.group(1)} but runtime "
                f"{profile.runtime_version} runs Scala {profile.scala_version}"
            )
    return profile


_METRICS_PROPERTIES = {
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.sql.adaptive.enabled": "true",
    "spark.dynamicAllocation.maxExecutors": "10",
}
_FORECAST_PROPERTIES = {
    **{k: v for k, v in _METRICS_PROPERTIES.items() if not k.startswith("spark.dynamicAllocation")},
    "spark.dynamicAllocation.enabled": "false",
    "spark.executor.instances": "2",
    "spark.executor.cores": "4",
    "spark.driver.cores": "4",
    "spark.executor.memory": "9600m",
    # LightGBM needs every task of a fit scheduled at once; no speculative duplicates.
    "spark.speculation": "false",
}

# The smoke batch (gcp-smoke) runs with the metrics job's properties: small, and no fit.
_JOB_PROPERTIES = {"pool_metrics": _METRICS_PROPERTIES, "forecast": _FORECAST_PROPERTIES, "smoke": _METRICS_PROPERTIES}

PROFILES: dict[str, RuntimeProfile] = {
    p.name: check_profile(p)
    for p in [
        RuntimeProfile(
            name="dataproc-1.2",
            runtime_version="1.2",
            spark_version="3.5",
            scala_version="2.12",
            python_version="3.12",
            jars=(JDBC_DRIVER, *SYNAPSEML_LIGHTGBM),
            job_properties={
                "pool_metrics": _METRICS_PROPERTIES,
                "forecast": _FORECAST_PROPERTIES,
                "smoke": _METRICS_PROPERTIES,
            },
        ),
        RuntimeProfile(
            name="dataproc-3.0",
            runtime_version="3.0",
            spark_version="4.0",
            scala_version="2.13",
            python_version="3.12",
            # Published for Spark 4.0 as "1.1.3-spark4.0"; not on Maven Central on 2026-11-26 (see pyproject).
            jars=(
                JDBC_DRIVER,
                MavenArtifact(
                    "com.microsoft.azure", "synapseml-lightgbm_2.13", "1.1.3-spark4.0", transitive=False, python=True
                ),
                MavenArtifact(
                    "com.microsoft.azure", "synapseml-core_2.13", "1.1.3-spark4.0", transitive=False, python=True
                ),
                MavenArtifact("com.microsoft.ml.lightgbm", "lightgbmlib", "3.3.510", transitive=False),
                MavenArtifact("io.spray", "spray-json_2.13", "1.3.6", transitive=False),
            ),
            job_properties={
                "pool_metrics": _METRICS_PROPERTIES,
                "forecast": _FORECAST_PROPERTIES,
                "smoke": _METRICS_PROPERTIES,
            },
        ),
    ]
}
# The profile whose Spark line the local tests run (pyspark 3.5), and the default of RUNTIME_PROFILE.
# Runtime 1.2 left Google's support on 2026-09-30; it stays available (batches still run) until 2028-09-30. It is
# kept because SynapseML 1.1.3 for Spark 4.0 / Scala 2.13 is not on Maven Central (see pyproject.toml). Moving
# on is one setting: RUNTIME_PROFILE=dataproc-3.0 (its jars must exist first; the rehearsal runs the profile's
# batches with rehearsal/requirements/dataproc-3.0.txt).
DEFAULT_PROFILE = "dataproc-1.2"


def get_profile(name: str) -> RuntimeProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileError(f"unknown runtime profile {name!r}; known: {sorted(PROFILES)}") from None
