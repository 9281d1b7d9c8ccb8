# What the pipeline needs to know about this infrastructure. `gcp_settings` maps 1:1 to the environment variables
# pipelines/settings.py reads; `make gcp-settings` turns `terraform output -json` into .env.gcp, and
# `cloudbuild_substitutions` is what the Cloud Build trigger is created with. Nothing is copied by hand.

locals {
  # Password-less; null while db_private_ip is unset (an empty project creates the instance after the network).
  database_url = var.db_private_ip == null ? null : "postgresql://${var.db_user}@${var.db_private_ip}:${var.db_port}/${var.db_name}"

  component_image_repository = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"

  gcp_settings = {
    GCP_PROJECT              = var.project_id
    GCP_REGION               = var.region
    SPARK_BUCKET             = google_storage_bucket.spark.name
    PIPELINE_BUCKET          = google_storage_bucket.pipeline.name
    PIPELINE_SERVICE_ACCOUNT = google_service_account.pipelines.email
    DATAPROC_SERVICE_ACCOUNT = google_service_account.dataproc.email
    VERTEX_NETWORKING        = var.vertex_networking
    NETWORK_ATTACHMENT       = google_compute_network_attachment.vertex_psc.id
    # Vertex AI takes the peered network by project NUMBER.
    VPC_NETWORK               = "projects/${data.google_project.current.number}/global/networks/${google_compute_network.vpc.name}"
    DATAPROC_SUBNETWORK       = google_compute_subnetwork.dataproc.id
    CLOUD_SQL_URL             = local.database_url
    CLOUD_SQL_PASSWORD_SECRET = google_secret_manager_secret.db_password.id
    TEMPLATE_REPOSITORY       = google_artifact_registry_repository.templates.repository_id
    # For runs started from a workstation; Cloud Build sets the commit's tag instead.
    COMPONENT_BASE_IMAGE = "${local.component_image_repository}/components:latest"
  }
}

output "gcp_settings" {
  description = "Environment of pipelines/settings.py (make gcp-settings writes it to .env.gcp)."
  value       = local.gcp_settings
}

output "cloudbuild_substitutions" {
  description = "--substitutions of the Cloud Build trigger (docs/deploy.md, step 7): setting X as _X."
  # GCP_PROJECT is Cloud Build's own $PROJECT_ID; COMPONENT_BASE_IMAGE is built per commit from _IMAGE_REPOSITORY.
  # An unset (null) setting is left out, and the build's `settings` step stops on its empty default.
  value = join(",", concat(
    [
      for key, value in local.gcp_settings : "_${key}=${value}"
      if value != null && !contains(["GCP_PROJECT", "COMPONENT_BASE_IMAGE"], key)
    ],
    ["_IMAGE_REPOSITORY=${google_artifact_registry_repository.images.repository_id}"],
  ))
}

output "cloudbuild_service_account" {
  description = "Full resource name of the account the Cloud Build trigger runs as (--service-account)."
  value       = google_service_account.cloudbuild.id
}

output "component_image_repository" {
  description = "Docker repository of the components' image; Cloud Build pushes <this>/components:<sha> and :latest."
  value       = local.component_image_repository
}
