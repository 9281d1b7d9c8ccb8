"""The Spark forecaster's features equal the legacy forecaster's, value by value, on the same panel."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from database.synthetic import SyntheticSpec, generate, load
from legacy import forecast_pools as legacy
from legacy.calculate_pool_metrics import run as run_legacy_metrics
from spark_src.forecast import transforms as T

AS_OF = dt.date(2026, 6, 25)


@pytest.fixture
def metrics_and_pools(db, db_config):
    load(db, generate(SyntheticSpec(pools=10, days=60, seed=5)))
    with db.begin() as conn:
        # Edge cases the synthetic set lacks: a pool without a group.
        conn.execute(text("UPDATE pools SET pool_group = NULL WHERE pool_id = (SELECT min(pool_id) FROM pools)"))
    run_legacy_metrics(db_config, target_table="pool_daily_metrics")
    with db.connect() as conn:
        metrics = pd.read_sql("SELECT * FROM pool_daily_metrics", conn)
        pools = pd.read_sql("SELECT * FROM pools", conn)
    return metrics, pools


METRICS_SCHEMA = "pool_id string, date date, " + ", ".join(f"{c} double" for c in T.METRIC_COLUMNS)
POOLS_SCHEMA = "pool_id string, pool_group string, is_active boolean, is_filtered_out boolean"


def _spark_frame(spark, frame: pd.DataFrame, schema: str):
    columns = [field.split()[0] for field in schema.split(", ")]
    rows = frame[columns].astype(object).where(frame[columns].notna(), None).itertuples(index=False)
    return spark.createDataFrame([tuple(r) for r in rows], schema)


def test_spark_features_equal_legacy_features(spark, metrics_and_pools):
    metrics, pools = metrics_and_pools
    expected = legacy.feature_frame(legacy.build_panel(metrics, pools, AS_OF, 30))

    metrics_df = _spark_frame(spark, metrics, METRICS_SCHEMA)
    pools_df = _spark_frame(spark, pools, POOLS_SCHEMA)
    actual = (
        T.feature_frame(T.build_panel(metrics_df, pools_df, AS_OF, 30))
        .toPandas()
        .assign(date=lambda f: pd.to_datetime(f["date"]))
        .sort_values(["date", "pool_id"])
        .reset_index(drop=True)
    )

    assert list(actual.columns) == ["pool_id", "date", *legacy.FEATURE_COLUMNS, *legacy.TARGET_COLUMNS]
    assert len(actual) == len(expected) > 200
    assert actual["pool_group_index"].isna().any()  # the group-less pool is in the panel
    assert (actual[["pool_id", "date"]].to_numpy() == expected[["pool_id", "date"]].to_numpy()).all()
    for column in [*legacy.FEATURE_COLUMNS, *legacy.TARGET_COLUMNS]:
        a, e = actual[column].to_numpy(dtype=float), expected[column].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(e)), f"NULLs differ in {column}"
        np.testing.assert_allclose(a[~np.isnan(a)], e[~np.isnan(e)], rtol=1e-12, atol=1e-9, err_msg=column)


def test_a_feature_of_day_d_does_not_change_when_later_days_change(spark, metrics_and_pools):
    metrics, pools = metrics_and_pools
    cutoff = dt.date(2026, 6, 20)
    changed = metrics.copy()
    later = pd.to_datetime(changed["date"]) > pd.Timestamp(cutoff)
    changed.loc[later, ["actual_apy", "actual_tvl", "rolling_apy_7d"]] *= 3.0

    def features_up_to_cutoff(frame: pd.DataFrame) -> pd.DataFrame:
        panel = T.build_panel(
            _spark_frame(spark, frame, METRICS_SCHEMA), _spark_frame(spark, pools, POOLS_SCHEMA), AS_OF, 30
        )
        df = T.feature_frame(panel)
        out = df.where(df.date <= cutoff).drop(*T.TARGET_COLUMNS).toPandas()
        return out.sort_values(["date", "pool_id"]).reset_index(drop=True)

    before, after = features_up_to_cutoff(metrics), features_up_to_cutoff(changed)
    assert len(before) > 100
    pd.testing.assert_frame_equal(before, after)
