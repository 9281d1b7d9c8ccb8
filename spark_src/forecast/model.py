"""The stacked SynapseML LightGBM forecaster: next-day TVL, stacked as a feature into next-day APY.

Mirrors the legacy forecaster (``legacy.forecast_pools``): the TVL model learns the log change of TVL (TVLs span
1e5…1e9 USD; trees on the level would quantise it), its prediction ``pred_tvl`` (USD) is an input of the APY
model, and at training time ``pred_tvl`` is the TVL model's in-sample prediction. The two fitted models and
their feature assembly are one Spark ``PipelineModel``, saved and reloaded as a whole.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer, VectorAssembler
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_src.forecast.transforms import FEATURE_COLUMNS

STACKED_FEATURE = "pred_tvl"
MODEL_NAME = "spark_lgbm_stacked"

# Determinism and local-mode settings from SynapseML's issues: seed + deterministic (#928); one task per fit,
# since numTasks above the partition count waits forever for a second worker; bulk transfer (quiet, and not
# dependent on the streaming order); no barrier mode (not needed for one task). Row order matters to LightGBM
# (#1886), so the training rows are sorted and coalesced to one partition before a fit.
COMMON_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "seed": 42,
    "deterministic": True,
    "numThreads": 1,
    "numTasks": 1,
    "dataTransferMode": "bulk",
    "useBarrierExecutionMode": False,
    "verbosity": -1,
    "passThroughArgs": "force_row_wise=true",
}
# Strongly regularised: a pool's TVL is close to a random walk (same reasoning and values as legacy).
TVL_PARAMS: dict[str, Any] = {
    "numIterations": 100,
    "learningRate": 0.02,
    "numLeaves": 4,
    "minDataInLeaf": 100,
    "lambdaL2": 10.0,
}
APY_PARAMS: dict[str, Any] = {
    "numIterations": 300,
    "learningRate": 0.03,
    "numLeaves": 15,
    "minDataInLeaf": 20,
    "featureFraction": 0.8,
    "baggingFraction": 0.8,
    "baggingFreq": 1,
    "lambdaL2": 1.0,
}


def free_port() -> int:
    """A port nobody listens on now. LightGBM binds from defaultListenPort upwards; a fixed 12400 lets two
    concurrent fits on one machine race for it (SynapseML #1311, #1783)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _regressor(features: str, label: str, prediction: str, params: dict[str, Any], seed: int):
    from synapse.ml.lightgbm import LightGBMRegressor

    return LightGBMRegressor(
        featuresCol=features,
        labelCol=label,
        predictionCol=prediction,
        defaultListenPort=free_port(),
        **{**COMMON_PARAMS, "seed": seed},
        **params,
    )


@dataclass(frozen=True)
class FittedForecaster:
    model: PipelineModel
    training_rows: int
    tvl_training_rows: int
    training_metrics: dict[str, float]


def _ordered(rows: DataFrame) -> DataFrame:
    return rows.orderBy("date", "pool_id").coalesce(1)


def fit(training: DataFrame, seed: int = 42) -> FittedForecaster:
    """Fits the TVL model on rows with a tvl today and tomorrow, then the APY model on all training rows.

    Args:
        training: Rows of :func:`spark_src.forecast.transforms.feature_frame` with a ``target_apy``.
        seed: LightGBM seed.
    """
    training = _ordered(training).cache()
    tvl_assembler = VectorAssembler(inputCols=FEATURE_COLUMNS, outputCol="tvl_features", handleInvalid="keep")
    tvl_rows = training.where(F.col("actual_tvl").isNotNull() & F.col("target_tvl").isNotNull()).withColumn(
        "tvl_log_change", F.log1p("target_tvl") - F.log1p("actual_tvl")
    )
    tvl_model = _regressor("tvl_features", "tvl_log_change", "tvl_log_change_pred", TVL_PARAMS, seed).fit(
        _ordered(tvl_assembler.transform(tvl_rows))
    )
    # NULL when today's tvl is NULL: there is no level to apply the change to (as legacy).
    stack = SQLTransformer(
        statement=f"SELECT *, expm1(log1p(actual_tvl) + tvl_log_change_pred) AS {STACKED_FEATURE} FROM __THIS__"
    )
    apy_assembler = VectorAssembler(
        inputCols=[*FEATURE_COLUMNS, STACKED_FEATURE], outputCol="apy_features", handleInvalid="keep"
    )
    stacked = apy_assembler.transform(stack.transform(tvl_model.transform(tvl_assembler.transform(training))))
    apy_model = _regressor("apy_features", "target_apy", "forecasted_apy", APY_PARAMS, seed).fit(_ordered(stacked))

    model = PipelineModel(stages=[tvl_assembler, tvl_model, stack, apy_assembler, apy_model])
    in_sample = model.transform(training).agg(
        F.avg(F.abs(F.col("forecasted_apy") - F.col("target_apy"))).alias("apy_mae"),
        (F.sum(F.abs(F.col(STACKED_FEATURE) - F.col("target_tvl"))) / F.sum(F.abs(F.col("target_tvl")))).alias(
            "tvl_wape"
        ),
        F.count(F.lit(1)).alias("rows"),
        F.count(F.when(F.col("actual_tvl").isNotNull() & F.col("target_tvl").isNotNull(), 1)).alias("tvl_rows"),
    )
    summary = in_sample.first()
    training.unpersist()
    return FittedForecaster(
        model=model,
        training_rows=summary["rows"],
        tvl_training_rows=summary["tvl_rows"],
        training_metrics={
            "in_sample_apy_mae": float(summary["apy_mae"]),
            "in_sample_tvl_wape": float(summary["tvl_wape"] or 0.0),
        },
    )


def forecast(model: PipelineModel, rows: DataFrame) -> DataFrame:
    """(pool_id, forecasted_apy, forecasted_tvl) for ``rows`` (the as-of date's feature rows)."""
    return model.transform(rows).select("pool_id", "forecasted_apy", F.col(STACKED_FEATURE).alias("forecasted_tvl"))
