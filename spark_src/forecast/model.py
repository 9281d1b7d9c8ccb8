"""The SynapseML LightGBM forecaster: next-day TVL and APY as robust corrections to persistence.

Persistence ("tomorrow = today") is the floor the model is built on, not a rival it has to beat from scratch:

- both models learn a *change*: TVL its log change ln(tvl[d+1]) - ln(tvl[d]), APY its change on the slog scale
  slog(apy[d+1]) - slog(apy[d]) (slog(x) = sign(x)·ln(1 + |x|), :mod:`spark_src.forecast.quarantine`). A model
  that learnt nothing predicts a change of about 0, i.e. persistence;
- heavy tails: the training changes are winsorised at their ``WINSOR_QUANTILES`` (so one 1e9 % day cannot
  drag a leaf), the loss is robust (``APY_OBJECTIVE``, chosen on backtests, see the README), and the
  predicted change is clipped to the same winsor bounds;
- a forecast APY is clipped to the pool's plausible range: its clean 30-day [min, max] widened by
  ``RANGE_MARGIN`` times its width on each side (today's value always inside), within the quarantine rule's
  [apy_min, apy_max].

The APY forecast is persistence plus two corrections, both chosen on the training window only (never on the
dates the forecast is judged on), both 0 when they do not help there:

- robust mean reversion: a share ``reversion_weight`` (one of :data:`REVERSION_WEIGHTS`) of today's distance
  from the pool's 3-day median APY is taken back (noisy yields revert; a random walk gets 0). It is the share
  whose fixed forecast has the least APY MAE on the training rows;
- the LightGBM correction, learnt on what the reversion leaves (target: slog change minus the reversion),
  multiplied by ``correction_shrink`` (one of :data:`CORRECTION_SHRINKS`): the shrink whose forecasts had the
  least APY MAE on the last ``VALIDATION_DAYS`` of the training window when the model was fitted on the days
  before them. A model that learnt nothing useful is shrunk to 0: persistence plus reversion.

The TVL prediction ``pred_tvl`` (USD) is stacked as a feature of the APY model. The assemblers, both models and
the SQL that turns changes back into levels are one Spark ``PipelineModel``, saved and reloaded as a whole.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer, VectorAssembler
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_src.common.caching import cached, released
from spark_src.forecast.quarantine import QuarantineRule
from spark_src.forecast.transforms import MODEL_FEATURE_COLUMNS

STACKED_FEATURE = "pred_tvl"
MODEL_NAME = "spark_lgbm_stacked"
NAIVE_MODEL_NAME = "naive"
WINSOR_QUANTILES = (0.01, 0.99)
RANGE_MARGIN = 0.25
REVERSION_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
CORRECTION_SHRINKS = (0.0, 0.5, 1.0)
VALIDATION_DAYS = 7

# Determinism and local-mode settings from SynapseML's issues: seed + deterministic (#928); one task per fit,
# since numTasks above the partition count waits forever for a second worker; bulk transfer (quiet, and not
# dependent on the streaming order); no barrier mode (not needed for one task). Row order matters to LightGBM
# (#1886), so the training rows are sorted and coalesced to one partition before a fit.
COMMON_PARAMS: dict[str, Any] = {
    "seed": 42,
    "deterministic": True,
    "numThreads": 1,
    "numTasks": 1,
    "dataTransferMode": "bulk",
    "useBarrierExecutionMode": False,
    "verbosity": -1,
    "passThroughArgs": "force_row_wise=true",
}
# Robust losses LightGBMRegressor offers, on the slog-change scale (a daily change of 0.1 is ~10 %).
OBJECTIVES: dict[str, dict[str, Any]] = {
    "l1": {"objective": "l1"},
    "huber": {"objective": "huber", "alpha": 0.1},
    "fair": {"objective": "fair", "passThroughArgs": "force_row_wise=true fair_c=0.1"},
    "l2": {"objective": "regression"},
}
APY_OBJECTIVE = "l1"
TVL_OBJECTIVE = "huber"
# Strongly regularised: a pool's TVL is close to a random walk.
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

_SLOG_APY = "signum(actual_apy) * log1p(abs(actual_apy))"
_SLOG_TARGET = "signum(target_apy) * log1p(abs(target_apy))"


def free_port() -> int:
    """A port nobody listens on now. LightGBM binds from defaultListenPort upwards; a fixed 12400 lets two
    concurrent fits on one machine race for it (SynapseML #1311, #1783)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _regressor(features: str, label: str, prediction: str, params: dict[str, Any], objective: str, seed: int):
    from synapse.ml.lightgbm import LightGBMRegressor

    return LightGBMRegressor(
        featuresCol=features,
        labelCol=label,
        predictionCol=prediction,
        defaultListenPort=free_port(),
        **{**COMMON_PARAMS, "seed": seed, **params, **OBJECTIVES[objective]},
    )


@dataclass(frozen=True)
class FittedForecaster:
    model: PipelineModel
    training_rows: int
    tvl_training_rows: int
    training_metrics: dict[str, float]
    bounds: dict[str, list[float]]
    reversion_weight: float = 0.0
    correction_shrink: float = 1.0


def _ordered(rows: DataFrame) -> DataFrame:
    return rows.orderBy("date", "pool_id").coalesce(1)


def _winsor_bounds(rows: DataFrame, column: str) -> tuple[float, float]:
    low, high = rows.approxQuantile(column, list(WINSOR_QUANTILES), 1e-4)
    return float(low), float(high)


def _clipped(column: str, low: float, high: float) -> str:
    return f"least(greatest({column}, {low!r}), {high!r})"


def _reversion(weight: float) -> str:
    """SQL of the reversion's slog change: ``weight`` of today's distance from the 3-day median, taken back."""
    return f"(-{weight!r} * coalesce(apy_gap_3d, 0D))"


def _level(slog_level: str) -> str:
    return f"signum({slog_level}) * expm1(abs({slog_level}))"


def _finish_statement(apy_low: float, apy_high: float, rule: QuarantineRule, weight: float, shrink: float) -> str:
    """SQL from the predicted slog correction to the forecast APY, clipped to the pool's plausible range."""
    width = "(apy_max_30d - apy_min_30d)"
    range_low = f"greatest({rule.apy_min!r}, least(actual_apy, apy_min_30d - {RANGE_MARGIN!r} * {width}))"
    range_high = f"least({rule.apy_max!r}, greatest(actual_apy, apy_max_30d + {RANGE_MARGIN!r} * {width}))"
    correction = f"{shrink!r} * {_clipped('apy_change_pred', apy_low, apy_high)}"
    unslog = _level(f"{_SLOG_APY} + {_reversion(weight)} + {correction}")
    return f"SELECT *, least(greatest({unslog}, {range_low}), {range_high}) AS forecasted_apy FROM __THIS__"


def choose_reversion_weight(training: DataFrame) -> float:
    """The :data:`REVERSION_WEIGHTS` share whose forecast (no model) has the least APY MAE on ``training``
    (the smallest share on a tie: the closest to persistence)."""
    maes = training.agg(
        *[
            F.avg(F.abs(F.expr(_level(f"{_SLOG_APY} + {_reversion(w)}")) - F.col("target_apy"))).alias(f"w{i}")
            for i, w in enumerate(REVERSION_WEIGHTS)
        ]
    ).first()
    scored = [(maes[f"w{i}"], i) for i in range(len(REVERSION_WEIGHTS)) if maes[f"w{i}"] is not None]
    return REVERSION_WEIGHTS[min(scored)[1]] if scored else 0.0


def _fit_apy(stacked: DataFrame, weight: float, objective: str, seed: int):
    """The APY correction model on ``stacked`` rows: (model, winsor low, winsor high) of its label, the slog
    change minus the reversion of ``weight``."""
    rows = stacked.withColumn("apy_residual", F.col("apy_change") - F.expr(_reversion(weight)))
    low, high = _winsor_bounds(rows, "apy_residual")
    label = F.least(F.greatest("apy_residual", F.lit(low)), F.lit(high))
    model = _regressor("apy_features", "apy_label", "apy_change_pred", APY_PARAMS, objective, seed).fit(
        _ordered(rows.withColumn("apy_label", label))
    )
    return model, low, high


def choose_correction_shrink(stacked: DataFrame, weight: float, objective: str, seed: int) -> float:
    """The :data:`CORRECTION_SHRINKS` factor with the least APY MAE on the last :data:`VALIDATION_DAYS` days of
    ``stacked`` for a model fitted on the days before them (the smallest on a tie); 1.0 when the window is too
    short to hold both."""
    last_day = stacked.agg(F.max("date")).first()[0]
    cutoff = F.date_sub(F.lit(last_day), VALIDATION_DAYS)
    earlier, validation = stacked.where(F.col("date") <= cutoff), stacked.where(F.col("date") > cutoff)
    if not earlier.take(1) or not validation.take(1):
        return 1.0
    model, low, high = _fit_apy(earlier, weight, objective, seed)
    predicted = model.transform(validation)
    base = f"{_SLOG_APY} + {_reversion(weight)}"
    correction = _clipped("apy_change_pred", low, high)
    maes = predicted.agg(
        *[
            F.avg(F.abs(F.expr(_level(f"{base} + {shrink!r} * {correction}")) - F.col("target_apy"))).alias(f"s{i}")
            for i, shrink in enumerate(CORRECTION_SHRINKS)
        ]
    ).first()
    return CORRECTION_SHRINKS[min((maes[f"s{i}"], i) for i in range(len(CORRECTION_SHRINKS)))[1]]


def fit(
    training: DataFrame,
    rule: QuarantineRule | None = None,
    seed: int = 42,
    apy_objective: str = APY_OBJECTIVE,
) -> FittedForecaster:
    """Fits the TVL model on rows with a tvl today and tomorrow; chooses the reversion weight and the correction
    shrink on the training rows; fits the APY correction on all training rows.

    Args:
        training: Rows of :func:`spark_src.forecast.transforms.model_frame` with a ``target_apy``.
        rule: The quarantine rule whose APY bounds cap the forecasts (default parameters when None).
        seed: LightGBM seed.
        apy_objective: A key of :data:`OBJECTIVES`.
    """
    if apy_objective not in OBJECTIVES:
        raise ValueError(f"apy_objective {apy_objective!r} is not one of {sorted(OBJECTIVES)}")
    with released() as frames:
        return _fit(training, rule or QuarantineRule(), seed, apy_objective, frames)


def _fit(
    training: DataFrame, rule: QuarantineRule, seed: int, apy_objective: str, frames: list[DataFrame]
) -> FittedForecaster:
    training = cached(
        _ordered(training)
        .withColumn("apy_change", F.expr(f"{_SLOG_TARGET} - {_SLOG_APY}"))
        .withColumn(
            "tvl_log_change",
            F.when((F.col("actual_tvl") > 0) & (F.col("target_tvl") > 0), F.log("target_tvl") - F.log("actual_tvl")),
        ),
        frames,
    )
    tvl_rows = training.where(F.col("tvl_log_change").isNotNull())
    tvl_low, tvl_high = _winsor_bounds(tvl_rows, "tvl_log_change") if tvl_rows.take(1) else (0.0, 0.0)

    tvl_assembler = VectorAssembler(inputCols=MODEL_FEATURE_COLUMNS, outputCol="tvl_features", handleInvalid="keep")
    tvl_label = F.least(F.greatest("tvl_log_change", F.lit(tvl_low)), F.lit(tvl_high))
    tvl_model = _regressor("tvl_features", "tvl_label", "tvl_log_change_pred", TVL_PARAMS, TVL_OBJECTIVE, seed).fit(
        _ordered(tvl_assembler.transform(tvl_rows.withColumn("tvl_label", tvl_label)))
    )
    # NULL when today's tvl is not positive: there is no level to apply the change to.
    stack = SQLTransformer(
        statement=f"SELECT *, CASE WHEN actual_tvl > 0 THEN exp(ln(actual_tvl) + "
        f"{_clipped('tvl_log_change_pred', tvl_low, tvl_high)}) END AS {STACKED_FEATURE} FROM __THIS__"
    )
    apy_assembler = VectorAssembler(
        inputCols=[*MODEL_FEATURE_COLUMNS, STACKED_FEATURE], outputCol="apy_features", handleInvalid="keep"
    )
    stacked = cached(
        apy_assembler.transform(stack.transform(tvl_model.transform(tvl_assembler.transform(training)))), frames
    )
    weight = choose_reversion_weight(training)
    shrink = choose_correction_shrink(stacked, weight, apy_objective, seed)
    apy_model, apy_low, apy_high = _fit_apy(stacked, weight, apy_objective, seed)
    finish = SQLTransformer(statement=_finish_statement(apy_low, apy_high, rule, weight, shrink))

    model = PipelineModel(stages=[tvl_assembler, tvl_model, stack, apy_assembler, apy_model, finish])
    in_sample = model.transform(training).agg(
        F.avg(F.abs(F.col("forecasted_apy") - F.col("target_apy"))).alias("apy_mae"),
        F.avg(F.abs(F.col("actual_apy") - F.col("target_apy"))).alias("persistence_apy_mae"),
        F.count(F.lit(1)).alias("rows"),
    )
    summary = in_sample.first()
    tvl_training_rows = tvl_rows.count()
    return FittedForecaster(
        model=model,
        training_rows=summary["rows"],
        tvl_training_rows=tvl_training_rows,
        training_metrics={
            "in_sample_apy_mae": float(summary["apy_mae"] or 0.0),
            "in_sample_persistence_apy_mae": float(summary["persistence_apy_mae"] or 0.0),
        },
        bounds={"apy_correction": [apy_low, apy_high], "tvl_log_change": [tvl_low, tvl_high]},
        reversion_weight=weight,
        correction_shrink=shrink,
    )


def forecast(model: PipelineModel, rows: DataFrame) -> DataFrame:
    """(pool_id, forecasted_apy, forecasted_tvl) for ``rows`` (the as-of date's feature rows)."""
    return model.transform(rows).select("pool_id", "forecasted_apy", F.col(STACKED_FEATURE).alias("forecasted_tvl"))


def persistence(rows: DataFrame) -> DataFrame:
    """The naive forecast of ``rows``: (pool_id, forecasted_apy, forecasted_tvl) = today's clean values."""
    return rows.select(
        "pool_id", F.col("actual_apy").alias("forecasted_apy"), F.col("actual_tvl").alias("forecasted_tvl")
    )
