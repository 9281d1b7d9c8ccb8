"""Registry of runs and cleanup of abandoned runs' debris, on the real embedded PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from database import run_registry as R


def _tables(db) -> list[str]:
    with db.connect() as conn:
        return list(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'stg%' ORDER BY 1")
            ).scalars()
        )


def _plant_run(db, run_id: str, model_dir: str, minutes_ago: int) -> None:
    R.register_run(db, run_id, model_dir)
    with db.begin() as conn:
        conn.execute(
            text("UPDATE pipeline_runs SET started_at = now() - make_interval(mins => :m) WHERE run_id = :r"),
            {"m": minutes_ago, "r": run_id},
        )
        for kind in ("pool_metrics", "forecast", "legacy_metrics"):
            conn.execute(text(f"CREATE TABLE stg_{kind}_{run_id} (x int)"))
        conn.execute(
            text(
                "INSERT INTO pool_forecast_history (pool_id, forecast_date, model, run_id, as_of, forecasted_apy) "
                "VALUES ('p1', '2026-06-02', 'legacy_rf_lgbm', :r, '2026-06-01', 1), "
                "('p2', '2026-06-02', 'legacy_rf_lgbm', :r, '2026-06-01', 2)"
            ),
            {"r": run_id},
        )


def test_cleanup_removes_only_what_abandoned_runs_left(db, tmp_path):
    dead_dir, young_dir, done_dir = tmp_path / "dead", tmp_path / "young", tmp_path / "done"
    for directory in (dead_dir, young_dir, done_dir):
        (directory / "pipeline_model").mkdir(parents=True)
    _plant_run(db, "dead1", str(dead_dir), minutes_ago=400)
    _plant_run(db, "young1", str(young_dir), minutes_ago=5)  # may still be working
    _plant_run(db, "done1", str(done_dir), minutes_ago=500)
    assert R.finish_run(db, "done1") == {"tables_dropped": 3}  # a succeeded run keeps its history and model
    with db.begin() as conn:
        conn.execute(text("CREATE TABLE stg_manual_experiment (x int)"))  # made by hand, not by a run
        conn.execute(
            text(
                "INSERT INTO pool_forecast_history (pool_id, forecast_date, model, run_id, as_of) "
                "VALUES ('p1', '2026-06-02', 'spark_lgbm_stacked', 'before_registry', '2026-06-01')"
            )
        )
    R.register_run(db, "current1")

    counts = R.clean_up_abandoned_runs(db, "current1", stale_after_minutes=360)

    assert counts == {
        "runs_cleaned": 1,
        "tables_dropped": 3,
        "history_rows_deleted": 2,
        "model_dirs_removed": 1,
        "unregistered_staging_tables": 1,
    }
    assert _tables(db) == [
        "stg_forecast_young1",
        "stg_legacy_metrics_young1",
        "stg_manual_experiment",
        "stg_pool_metrics_young1",
    ]
    assert not dead_dir.exists() and young_dir.exists() and done_dir.exists()
    with db.connect() as conn:
        statuses = dict(conn.execute(text("SELECT run_id, status FROM pipeline_runs")).all())
        history = conn.execute(text("SELECT run_id, count(*) FROM pool_forecast_history GROUP BY 1 ORDER BY 1")).all()
        recorded = conn.execute(text("SELECT cleanup FROM pipeline_runs WHERE run_id = 'dead1'")).scalar()
    assert statuses == {"dead1": "cleaned", "young1": "running", "done1": "succeeded", "current1": "running"}
    assert history == [("before_registry", 1), ("done1", 2), ("young1", 2)]
    assert recorded == {
        "tables_dropped": 3,
        "history_rows_deleted": 2,
        "model_dir_removed": True,
        "by_run": "current1",
    }

    # Nothing is cleaned twice; the current run is never its own victim, whatever the threshold.
    again = R.clean_up_abandoned_runs(db, "current1", stale_after_minutes=0)
    assert again["runs_cleaned"] == 1  # young1, now that the threshold is 0
    with db.connect() as conn:
        current = conn.execute(text("SELECT status FROM pipeline_runs WHERE run_id = 'current1'")).scalar()
    assert current == "running" and _tables(db) == ["stg_manual_experiment"]


def test_run_tables_match_the_run_id_as_a_whole_suffix(db):
    with db.begin() as conn:
        for name in ("stg_pool_metrics_abc", "stg_pool_metrics_xabc", "stg_forecast_abc", "pool_metrics_abc"):
            conn.execute(text(f"CREATE TABLE {name} (x int)"))
        assert R.run_tables(conn, "abc") == ["stg_forecast_abc", "stg_pool_metrics_abc"]


@pytest.mark.parametrize("run_id", ["abc\n", "a-b", "x; DROP TABLE pools", "A1", "a" * 41, ""])
def test_run_ids_are_checked(db, run_id):
    with pytest.raises(ValueError, match="not a run id"):
        R.register_run(db, run_id)


def test_a_run_id_of_digits_only_is_a_run_id(db):
    with db.begin() as conn:
        conn.execute(text("CREATE TABLE stg_pool_metrics_22145 (x int)"))
    R.register_run(db, "22145")
    with db.connect() as conn:
        assert R.run_tables(conn, "22145") == ["stg_pool_metrics_22145"]


def test_gcs_model_dir_is_deleted_by_prefix(monkeypatch):
    """The Cloud Storage client is mocked (no GCP here): the blobs under the directory's prefix are deleted."""
    deleted, listed = [], []

    class Blob:
        def __init__(self, name):
            self.name = name

        def delete(self):
            deleted.append(self.name)

    class Bucket:
        def list_blobs(self, prefix):
            listed.append(prefix)
            return [Blob(f"{prefix}pipeline_model/metadata"), Blob(f"{prefix}model_card.json")]

    class Client:
        def bucket(self, name):
            assert name == "my-pipeline-bucket"
            return Bucket()

    from google.cloud import storage

    monkeypatch.setattr(storage, "Client", Client)
    assert R.remove_model_dir("gs://my-pipeline-bucket/models/run1") is True
    assert listed == ["models/run1/"]
    assert deleted == ["models/run1/pipeline_model/metadata", "models/run1/model_card.json"]
