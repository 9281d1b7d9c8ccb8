# Vertex AI Pipelines: the pipeline-root bucket (run artifacts under pipeline-root/, models under models/), the
# service account pipeline jobs run as, and the Artifact Registry repositories of pipeline templates (KFP) and of
# the lightweight components' image (Docker).

resource "google_project_service" "aiplatform" {
  service = "aiplatform.googleapis.com"
}

resource "google_project_service" "artifactregistry" {
  service = "artifactregistry.googleapis.com"
}

resource "google_storage_bucket" "pipeline" {
  name                        = "${var.project_id}-pipeline-root"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets
  # No lifecycle rule: run artifacts are the lineage of what was promoted into the database, and models/ holds
  # the models the forecasts were made with.
}

resource "google_service_account" "pipelines" {
  account_id   = "${var.name_prefix}-pipelines"
  display_name = "Vertex AI pipeline jobs of the DeFi pool pipeline"
}

locals {
  pipelines_member = "serviceAccount:${google_service_account.pipelines.email}"
}

# Run pipeline jobs, log to Vertex AI Experiments, record lineage in ML Metadata.
resource "google_project_iam_member" "pipelines_aiplatform_user" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = local.pipelines_member
}

# GCPC's DataprocPySparkBatchOp creates the batches and polls them (dataproc.batches.create/get, operations.get).
resource "google_project_iam_member" "pipelines_dataproc_editor" {
  project = var.project_id
  role    = "roles/dataproc.editor"
  member  = local.pipelines_member
}

# Creating a batch that runs as the Dataproc service account requires actAs on that account; granted on it alone,
# so the pipeline cannot start anything as any other identity of the project.
resource "google_service_account_iam_member" "pipelines_act_as_dataproc" {
  service_account_id = google_service_account.dataproc.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.pipelines_member
}

# Pipeline root (artifacts of every task) and the model directories.
resource "google_storage_bucket_iam_member" "pipelines_pipeline_bucket" {
  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.objectAdmin"
  member = local.pipelines_member
}

# Read-only on the staged code: lineage records and checks of what a run used, never a write.
resource "google_storage_bucket_iam_member" "pipelines_spark_bucket" {
  bucket = google_storage_bucket.spark.name
  role   = "roles/storage.objectViewer"
  member = local.pipelines_member
}

# The components (upserts, parity, evaluation) connect to the database and read the password themselves.
resource "google_secret_manager_secret_iam_member" "pipelines_db_password" {
  secret_id = google_secret_manager_secret.db_password.id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.pipelines_member
}

resource "google_artifact_registry_repository" "templates" {
  repository_id = "${var.name_prefix}-pipeline-templates"
  location      = var.region
  format        = "KFP"
  description   = "Compiled pipeline templates (python -m pipelines.cli publish), tagged with the commit and latest."

  depends_on = [google_project_service.artifactregistry]
}

resource "google_artifact_registry_repository" "images" {
  repository_id = "${var.name_prefix}-pipeline-images"
  location      = var.region
  format        = "DOCKER"
  description   = "Base image of the pipeline's lightweight components (COMPONENT_BASE_IMAGE)."

  depends_on = [google_project_service.artifactregistry]
}

# Pipeline jobs pull the components' image and (for schedules) read templates.
resource "google_artifact_registry_repository_iam_member" "pipelines_images_reader" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = local.pipelines_member
}

resource "google_artifact_registry_repository_iam_member" "pipelines_templates_reader" {
  location   = google_artifact_registry_repository.templates.location
  repository = google_artifact_registry_repository.templates.name
  role       = "roles/artifactregistry.reader"
  member     = local.pipelines_member
}

# Vertex AI's service agent creates each pipeline job's PSC interface in the VPC through the network attachment
# (terraform/network.tf); Google's setup for PSC interfaces grants it the Compute Network Admin role for that.
resource "google_project_iam_member" "vertex_agent_network_admin" {
  project = var.project_id
  role    = "roles/compute.networkAdmin"
  member  = "serviceAccount:service-${data.google_project.current.number}@gcp-sa-aiplatform.iam.gserviceaccount.com"

  depends_on = [google_project_service.aiplatform]
}
