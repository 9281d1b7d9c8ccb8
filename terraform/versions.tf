# Terraform and provider versions. Google provider 7.x is the current major (7.0: September 2025); its breaking
# changes (e.g. google_project_service.disable_on_destroy now defaults to false) are relied on below.
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }

  # State: keep it in a versioned GCS bucket created once by hand (docs/deploy.md, step 2), e.g.
  #   terraform init -backend-config="bucket=<project>-tfstate" -backend-config="prefix=defi-pipeline"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
  # Every resource carries these labels (where the resource type supports labels).
  default_labels = var.labels
}

# The project NUMBER: Vertex AI wants the peered network as projects/<number>/global/networks/<name>.
data "google_project" "current" {
  project_id = var.project_id
}
