"""Lineage artifacts: a ``dsl.Dataset`` per table a run reads or writes, a ``dsl.Model`` per fitted model.

Vertex ML Metadata draws the lineage graph from the artifacts each execution consumes and produces; these
components make the tables and the model first-class artifacts (URIs name them, without credentials) with the
figures a reader needs: row counts, date range, run id, the Dataproc batch that wrote them, code version.
The local run produces the same artifacts.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def record_table(
    database_url: str,
    table: str,
    role: str,
    run_id: str,
    dataset: dsl.Output[dsl.Dataset],
    upstream: dsl.Input[dsl.Dataset] = None,
    time_column: str = "date",
    batch_resources: str = "",
    password_secret: str = "env:DB_PASSWORD",
) -> None:
    """Describes ``table`` as a Dataset artifact (uri ``postgresql://host:port/db/public.table``).

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        table: The table.
        role: ``source``, ``staging`` or ``target``.
        run_id: The pipeline run.
        dataset: Output; metadata: role, rows, first/last day of ``time_column``, run id, batch, code version.
        upstream: The artifact this table was derived from (draws the lineage edge).
        time_column: Date or timestamp column for the date range; empty for none.
        batch_resources: ``gcp_resources`` of the Dataproc batch that wrote the table (empty locally).
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
    """
    import json

    from sqlalchemy import text

    from spark_src.common.config import DbConfig
    from spark_src.common.sql import check_identifiers, connect
    from spark_src.common.storage import code_version

    check_identifiers(table, *([time_column] if time_column else []))
    if role not in ("source", "staging", "target"):
        raise ValueError(f"role must be source, staging or target, got {role!r}")
    db = DbConfig.from_url(database_url, password_secret).named("record_lineage", run_id)
    span = f', min("{time_column}")::date, max("{time_column}")::date' if time_column else ", NULL, NULL"
    with connect(db) as conn:
        conn.execute(text("SET TIME ZONE 'UTC'"))  # a timestamptz's day is its UTC day, as in the jobs
        rows, first, last = conn.execute(text(f'SELECT count(*){span} FROM "{table}"')).one()
    batch = ""
    if batch_resources:
        # gcp_resources is JSON: {"resources": [{"resourceType": "DataprocBatch", "resourceUri": "https://…"}]}
        resources = json.loads(batch_resources).get("resources", [])
        batch = next((r.get("resourceUri", "") for r in resources if r.get("resourceType") == "DataprocBatch"), "")
    dataset.uri = db.table_uri(f"public.{table}")
    dataset.metadata.update(
        {
            "table": table,
            "role": role,
            "rows": rows,
            "first_day": first.isoformat() if first else "",
            "last_day": last.isoformat() if last else "",
            "run_id": run_id,
            "dataproc_batch": batch,
            "code_version": code_version(),
        }
    )


@dsl.component(base_image=component_base_image())
def record_model(
    model_dir: str,
    run_id: str,
    model: dsl.Output[dsl.Model],
    training_data: dsl.Input[dsl.Dataset] = None,
    batch_resources: str = "",
) -> None:
    """Describes the fitted forecast model as a Model artifact: uri = its directory, metadata = its model card.

    Args:
        model_dir: The model directory (local path or ``gs://``) holding ``pipeline_model/`` and ``model_card.json``.
        run_id: The pipeline run.
        model: Output; uri is ``model_dir``, metadata the model card (feature list as a count).
        training_data: The table the model was trained on (draws the lineage edge).
        batch_resources: ``gcp_resources`` of the Dataproc batch that fitted it (empty locally).
    """
    import json
    from pathlib import Path

    card_uri = f"{model_dir.rstrip('/')}/model_card.json"
    if card_uri.startswith("gs://"):
        from google.cloud import storage

        bucket, _, blob = card_uri[5:].partition("/")
        card = json.loads(storage.Client().bucket(bucket).blob(blob).download_as_text())
    else:
        card = json.loads(Path(card_uri).read_text())
    # GCPC lists the operation (DataprocLro) first and the batch (DataprocBatch) second: pick by type.
    resources = json.loads(batch_resources).get("resources", []) if batch_resources else []
    batch = next((r.get("resourceUri", "") for r in resources if r.get("resourceType") == "DataprocBatch"), "")
    model.uri = model_dir.rstrip("/")
    model.metadata.update(
        {k: v for k, v in card.items() if k not in ("features", "parameters")}
        | {
            "features": len(card["features"]),
            "parameters": json.dumps(card.get("parameters", {}), sort_keys=True),
            "run_id": run_id,
            "model_card": card_uri,
            "dataproc_batch": batch,
        }
    )
