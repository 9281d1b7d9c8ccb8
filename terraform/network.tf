# The VPC both halves of the pipeline use to reach Cloud SQL's private IP:
# - Dataproc Serverless batches run in the subnet below (DATAPROC_SUBNETWORK);
# - Vertex AI pipeline jobs enter the VPC through a Private Service Connect interface (NETWORK_ATTACHMENT, the
#   default) or, with vertex_networking = "peering", are peered with it (VPC_NETWORK). Cloud SQL's private IP lives
#   in Google's producer network behind the private services access peering below: a PSC interface sits in a
#   subnet of the VPC and reaches it like the batches do; a peered job reaches only the VPC's own subnets, since
#   peering is not transitive.

resource "google_project_service" "compute" {
  service = "compute.googleapis.com"
}

resource "google_project_service" "servicenetworking" {
  service = "servicenetworking.googleapis.com"
}

resource "google_compute_network" "vpc" {
  name                    = var.network_name
  auto_create_subnetworks = false # one subnet, in the pipeline's region, with a range we choose

  depends_on = [google_project_service.compute]
}

resource "google_compute_subnetwork" "dataproc" {
  name          = var.dataproc_subnet_name
  region        = var.region
  network       = google_compute_network.vpc.id
  ip_cidr_range = var.dataproc_subnet_cidr
  # Batches have internal IPs only: Private Google Access is how they reach GCS (code, jars, models), Secret
  # Manager (the password) and logging. Dataproc Serverless refuses a subnet without it.
  private_ip_google_access = true
}

# Dataproc Serverless requires that the batch's driver and executors can talk to each other on all ports: an
# ingress rule from the subnet's own range. No source outside the subnet is allowed in.
resource "google_compute_firewall" "dataproc_internal" {
  name          = "${var.network_name}-allow-dataproc-internal"
  network       = google_compute_network.vpc.id
  direction     = "INGRESS"
  source_ranges = [google_compute_subnetwork.dataproc.ip_cidr_range]

  allow {
    protocol = "all"
  }
}

# Private services access: a range Google's producer networks (Cloud SQL, Vertex AI) take addresses from, and the
# peering that connects them to the VPC.
resource "google_compute_global_address" "private_services" {
  name          = "${var.network_name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  network       = google_compute_network.vpc.id
  address       = split("/", var.private_service_cidr)[0]
  prefix_length = tonumber(split("/", var.private_service_cidr)[1])
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]

  depends_on = [google_project_service.servicenetworking]
}

# Private Service Connect interface of the Vertex AI pipeline jobs: Vertex creates an interface in this subnet for
# each job, through the network attachment (its id is NETWORK_ATTACHMENT). The subnet needs only a few addresses.
resource "google_compute_subnetwork" "vertex_psc" {
  name          = "${var.network_name}-vertex-psc"
  region        = var.region
  network       = google_compute_network.vpc.id
  ip_cidr_range = var.vertex_psc_subnet_cidr
}

resource "google_compute_network_attachment" "vertex_psc" {
  name                  = "${var.name_prefix}-vertex-psc"
  region                = var.region
  connection_preference = "ACCEPT_AUTOMATIC"
  subnetworks           = [google_compute_subnetwork.vertex_psc.self_link]
}
