"""Settings of a made-up but well-formed GCP project, for the tests that build GCP requests offline."""

REAL_SETTINGS = {
    "GCP_PROJECT": "acme-defi",
    "GCP_REGION": "europe-west4",
    "SPARK_BUCKET": "acme-defi-spark-staging",
    "PIPELINE_BUCKET": "acme-defi-pipeline-root",
    "PIPELINE_SERVICE_ACCOUNT": "defi-pipelines@acme-defi.iam.gserviceaccount.com",
    "DATAPROC_SERVICE_ACCOUNT": "defi-dataproc@acme-defi.iam.gserviceaccount.com",
    "NETWORK_ATTACHMENT": "projects/acme-defi/regions/europe-west4/networkAttachments/defi-vertex-psc",
    "VPC_NETWORK": "projects/123456789012/global/networks/defi-vpc",
    "DATAPROC_SUBNETWORK": "projects/acme-defi/regions/europe-west4/subnetworks/defi-dataproc",
    "CLOUD_SQL_PASSWORD_SECRET": "projects/acme-defi/secrets/defi-db-password",
}
