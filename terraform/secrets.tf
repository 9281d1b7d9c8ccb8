# The database password lives in Secret Manager; the jobs and components receive only the secret's name
# (CLOUD_SQL_PASSWORD_SECRET) and read the latest version themselves. Terraform creates the secret but never a version:
# a value written here would sit in plain text in the Terraform state. The operator adds it with
#   gcloud secrets versions add <db_password_secret_id> --data-file=-
# (docs/deploy.md, step 5). Who may read it is granted on this secret only (dataproc.tf, vertex.tf).

resource "google_project_service" "secretmanager" {
  service = "secretmanager.googleapis.com"
}

resource "google_secret_manager_secret" "db_password" {
  secret_id = var.db_password_secret_id

  replication {
    user_managed {
      replicas {
        location = var.region # the data stays in the pipeline's region
      }
    }
  }

  depends_on = [google_project_service.secretmanager]
}
