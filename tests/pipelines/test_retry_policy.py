"""The Vertex pipeline retries its idempotent database steps on a transient error, and nothing else."""

from __future__ import annotations

import yaml

from pipelines.settings import COMPILED_DIR

RETRIED = {
    "start run: register, clean up abandoned runs",
    "finish run: drop its shadow table, mark it succeeded",
    "upsert pool_daily_metrics",
    "forecast dates",
    "promote forecasts",
    "lineage: raw_defillama_pool_history",
    "lineage: raw_coinmarketcap_ohlcv",
    "lineage: gas_fees_daily",
    "lineage: pools",
    "lineage: metrics staging",
    "lineage: pool_daily_metrics (metrics)",
    "lineage: forecast staging",
    "lineage: backtest staging",
    "lineage: quarantine staging",
    "lineage: legacy backtest staging",
    "lineage: pool_daily_metrics (forecasts)",
    "lineage: pool_forecast_history (forecasts)",
    "lineage: pool_observation_quarantine (forecasts)",
}


def _policies(path) -> dict[str, dict | None]:
    """{display name: retryPolicy or None} of every task, nested DAGs included, of a compiled YAML."""
    spec = next(d for d in yaml.safe_load_all(path.read_text()) if d)
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return {t["taskInfo"]["name"]: t.get("retryPolicy") for dag in dags for t in dag["tasks"].values()}


def test_vertex_retries_exactly_the_idempotent_database_steps():
    policies = _policies(COMPILED_DIR / "pool_pipeline_vertex.yaml")
    assert {name for name, policy in policies.items() if policy} == RETRIED
    # Not retried: the Dataproc batches (a rerun would reuse the run's batch id), the gates (a verdict is not a
    # transient error), the legacy jobs, the evaluation and the experiment logging.
    assert "parity gate: Spark vs legacy" in policies and policies["parity gate: Spark vs legacy"] is None
    assert {policies[name]["maxRetryCount"] for name in RETRIED} == {3}
    assert policies["forecast dates"] == {
        "backoffDuration": "30s",
        "backoffFactor": 2.0,
        "backoffMaxDuration": "600s",
        "maxRetryCount": 3,
    }


def test_local_runs_do_not_retry():
    """kfp.local honours retry policies too: a local failure must show at once."""
    assert not any(_policies(COMPILED_DIR / "pool_pipeline_local.yaml").values())
