# Dataproc Serverless: the spark bucket (staged code, entry files, jars, job scratch space) and the service
# account the batches run as. The GCS layout inside the bucket is pipelines/settings.py's:
#   code/<code_version>/spark_src.zip, code/<code_version>/entrypoints/<job>.py, jars/<jar>, temp/ (scratch).

resource "google_project_service" "dataproc" {
  service = "dataproc.googleapis.com"
}

resource "google_storage_bucket" "spark" {
  name                        = "${var.project_id}-spark-staging"
  location                    = var.region # same region as the batches: no cross-region reads of code and jars
  uniform_bucket_level_access = true       # access by IAM only (no object ACLs), so bucket grants are the whole story
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  # Scratch space is cleaned up; code/ and jars/ are not: a batch of an older pipeline run (or a rerun of an
  # old template) still reads its code version, and jar names carry their version so they never go stale.
  lifecycle_rule {
    condition {
      age            = var.temp_retention_days
      matches_prefix = ["temp/"]
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_service_account" "dataproc" {
  account_id   = "${var.name_prefix}-dataproc"
  display_name = "Dataproc Serverless batches of the DeFi pool pipeline"
}

locals {
  dataproc_member = "serviceAccount:${google_service_account.dataproc.email}"
}

# Required of any custom batch service account (Dataproc Serverless docs: "Required Dataproc Worker role").
resource "google_project_iam_member" "dataproc_worker" {
  project = var.project_id
  role    = "roles/dataproc.worker"
  member  = local.dataproc_member
}

# The jobs reach Cloud SQL by private IP, which needs no IAM. The role is what the Cloud SQL connectors (a switch
# to IAM database authentication) would need; it only allows connecting to and describing instances.
resource "google_project_iam_member" "dataproc_cloudsql_client" {
  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = local.dataproc_member
}

# Object access on the two buckets the jobs use, and no other: reads code/jars, writes temp/ here ...
resource "google_storage_bucket_iam_member" "dataproc_spark_bucket" {
  bucket = google_storage_bucket.spark.name
  role   = "roles/storage.objectAdmin"
  member = local.dataproc_member
}

# ... and writes the forecast model directories under models/ of the pipeline bucket (GcpSettings.model_root).
resource "google_storage_bucket_iam_member" "dataproc_pipeline_bucket" {
  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.objectAdmin"
  member = local.dataproc_member
}

# The jobs resolve --password-secret themselves; access to this one secret, not to the project's secrets.
resource "google_secret_manager_secret_iam_member" "dataproc_db_password" {
  secret_id = google_secret_manager_secret.db_password.id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.dataproc_member
}
