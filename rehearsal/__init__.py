"""The Dataproc rehearsal: runs the staged Spark batches on this machine the way Dataproc Serverless runs them
(spark-submit of the entry file with the batch's python files, jars, properties and args, in a separate Python
shaped like the runtime), so that a batch that could not run on GCP fails here first."""
