# Inputs. Names of buckets, accounts and repositories are derived from project_id and name_prefix (see locals in
# dataproc.tf / vertex.tf); outputs.tf hands the results to the pipeline's settings (make gcp-settings).

variable "project_id" {
  description = "GCP project id (not the number) that hosts the pipeline."
  type        = string
}

variable "region" {
  description = "Region of Vertex AI Pipelines, Dataproc Serverless batches, buckets and Artifact Registry."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of service accounts, network, subnet and repositories (lower case, starts with a letter)."
  type        = string
  default     = "defi"

  validation {
    # Service account ids are 6-30 characters; the longest suffix used is "-cloudbuild" (11).
    condition     = can(regex("^[a-z][a-z0-9-]{2,18}$", var.name_prefix))
    error_message = "name_prefix: 3-19 characters, lower-case letters, digits and '-', starting with a letter."
  }
}

variable "labels" {
  description = "Labels put on every resource that supports them."
  type        = map(string)
  default     = { app = "defi-pool-pipeline" }
}

# --- network ------------------------------------------------------------------------------------------------------

variable "network_name" {
  description = "Name of the VPC the Dataproc batches run in and Vertex AI pipeline jobs are peered with."
  type        = string
  default     = "defi-vpc"
}

variable "dataproc_subnet_name" {
  description = "Name of the subnet of the Dataproc Serverless batches (region = var.region)."
  type        = string
  default     = "defi-dataproc"
}

variable "dataproc_subnet_cidr" {
  description = "Primary range of the Dataproc subnet. Each batch takes one address per driver/executor."
  type        = string
  default     = "10.10.0.0/22"

  validation {
    condition     = can(cidrhost(var.dataproc_subnet_cidr, 0))
    error_message = "dataproc_subnet_cidr must be an IPv4 CIDR such as 10.10.0.0/22."
  }
}

variable "vertex_networking" {
  description = <<-EOT
    How Vertex AI pipeline jobs reach Cloud SQL's private IP: "psc" (a Private Service Connect interface in the VPC,
    through the network attachment; reaches Cloud SQL) or "peering" (VPC peering; reaches only the VPC's own
    subnets, so Cloud SQL only through a Cloud SQL PSC endpoint you add in the VPC). README: "Vertex AI → Cloud SQL".
  EOT
  type        = string
  default     = "psc"

  validation {
    condition     = contains(["psc", "peering"], var.vertex_networking)
    error_message = "vertex_networking is psc or peering."
  }
}

variable "vertex_psc_subnet_cidr" {
  description = "Range of the subnet the pipeline jobs' PSC interfaces take addresses from. Must not overlap the others."
  type        = string
  default     = "10.10.8.0/28"

  validation {
    condition     = can(cidrhost(var.vertex_psc_subnet_cidr, 0))
    error_message = "vertex_psc_subnet_cidr must be an IPv4 CIDR such as 10.10.8.0/28."
  }
}

variable "private_service_cidr" {
  description = <<-EOT
    Range reserved for private services access (Cloud SQL private IP, Vertex AI peering). Must not overlap the
    subnet. Cloud SQL's private IP is taken from it.
  EOT
  type        = string
  default     = "10.20.0.0/16"

  validation {
    condition     = can(cidrhost(var.private_service_cidr, 0)) && tonumber(split("/", var.private_service_cidr)[1]) <= 24
    error_message = "private_service_cidr must be an IPv4 CIDR of /24 or larger, e.g. 10.20.0.0/16."
  }
}

# --- database (Cloud SQL for PostgreSQL with a private IP on this VPC; not managed here) ---------------------------

variable "db_private_ip" {
  description = <<-EOT
    Private IP of the Cloud SQL for PostgreSQL instance, which is attached to this VPC. null until the instance
    exists (first apply of an empty project: docs/deploy.md, step 3); gcp-settings refuses to write .env.gcp then.
  EOT
  type        = string
  default     = null

  validation {
    condition     = var.db_private_ip == null || can(regex("^\\d{1,3}(\\.\\d{1,3}){3}$", var.db_private_ip))
    error_message = "db_private_ip must be an IPv4 address, e.g. 10.20.0.3."
  }
}

variable "db_port" {
  description = "PostgreSQL port of the Cloud SQL instance."
  type        = number
  default     = 5432
}

variable "db_name" {
  description = "Database holding the platform's tables."
  type        = string
  default     = "defi"
}

variable "db_user" {
  description = "Database user of the pipeline; its password goes into the secret db_password_secret_id."
  type        = string
  default     = "metrics"
}

variable "db_password_secret_id" {
  description = "Secret Manager secret id (short name) of the database password. Its value is added with gcloud."
  type        = string
  default     = "defi-db-password"
}

# --- buckets -------------------------------------------------------------------------------------------------------

variable "temp_retention_days" {
  description = "Age in days after which objects under temp/ of the spark bucket are deleted."
  type        = number
  default     = 30
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete non-empty buckets (models, staged code). Keep false in production."
  type        = bool
  default     = false
}
