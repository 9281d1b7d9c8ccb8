"""record_model / record_table name the Dataproc batch from GCPC's gcp_resources, whatever the order of its entries."""

from __future__ import annotations

import json

from google.protobuf import json_format
from google_cloud_pipeline_components.proto import gcp_resources_pb2
from kfp import dsl

from components.record_lineage import record_model

PREFIX = "https://dataproc.googleapis.com/v1"
BATCH = f"{PREFIX}/projects/p/locations/europe-west1/batches/forecast-r1"
OPERATION = f"{PREFIX}/projects/p/regions/europe-west1/operations/8e1c"


def gcp_resources_as_gcpc_writes_them() -> str:
    """The output of DataprocPySparkBatchOp, built like GCPC's dataproc_util does: the LRO first, then the batch."""
    resources = gcp_resources_pb2.GcpResources()
    operation = resources.resources.add()
    operation.resource_type, operation.resource_uri = "DataprocLro", OPERATION
    batch = resources.resources.add()
    batch.resource_type, batch.resource_uri = "DataprocBatch", BATCH
    return json_format.MessageToJson(resources)


def test_record_model_names_the_batch_not_the_operation(tmp_path):
    card = {"model": "spark_lgbm_stacked", "features": ["a", "b", "c"], "parameters": {"tvl": {"numLeaves": 4}}}
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    model = dsl.Model(name="model", uri="", metadata={})

    record_model.python_func(
        model_dir=str(tmp_path), run_id="r1", model=model, batch_resources=gcp_resources_as_gcpc_writes_them()
    )

    assert model.metadata["dataproc_batch"] == BATCH
    assert model.metadata["features"] == 3
    assert model.uri == str(tmp_path)


def test_record_model_without_a_batch_records_none(tmp_path):
    (tmp_path / "model_card.json").write_text(json.dumps({"features": []}))
    model = dsl.Model(name="model", uri="", metadata={})
    record_model.python_func(model_dir=str(tmp_path), run_id="r1", model=model, batch_resources="")
    assert model.metadata["dataproc_batch"] == ""
