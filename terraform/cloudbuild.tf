# The identity cloudbuild.yaml runs as (the trigger's --service-account). A dedicated account instead of the
# project's default: it holds exactly what the build does, namely push the components' image, stage code and jars,
# publish the template and create the schedule.

resource "google_project_service" "cloudbuild" {
  service = "cloudbuild.googleapis.com"
}

resource "google_service_account" "cloudbuild" {
  account_id   = "${var.name_prefix}-cloudbuild"
  display_name = "Cloud Build of the DeFi pool pipeline"
}

locals {
  cloudbuild_member = "serviceAccount:${google_service_account.cloudbuild.email}"
}

# A build running as a user-managed service account writes its own logs (cloudbuild.yaml: CLOUD_LOGGING_ONLY).
resource "google_project_iam_member" "cloudbuild_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.cloudbuild_member
}

# `pipelines.cli stage` uploads code/<sha>/ and jars/.
resource "google_storage_bucket_iam_member" "cloudbuild_spark_bucket" {
  bucket = google_storage_bucket.spark.name
  role   = "roles/storage.objectAdmin"
  member = local.cloudbuild_member
}

resource "google_artifact_registry_repository_iam_member" "cloudbuild_images_writer" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = local.cloudbuild_member
}

resource "google_artifact_registry_repository_iam_member" "cloudbuild_templates_writer" {
  location   = google_artifact_registry_repository.templates.location
  repository = google_artifact_registry_repository.templates.name
  role       = "roles/artifactregistry.writer"
  member     = local.cloudbuild_member
}

# `pipelines.cli schedule` creates the Vertex AI schedule (and `submit` a run).
resource "google_project_iam_member" "cloudbuild_aiplatform_user" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = local.cloudbuild_member
}

# Schedules and runs execute as the pipelines account; creating them needs actAs on it, and on it alone.
resource "google_service_account_iam_member" "cloudbuild_act_as_pipelines" {
  service_account_id = google_service_account.pipelines.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.cloudbuild_member
}
