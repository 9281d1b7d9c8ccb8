"""The Vertex AI variant of the pipeline, one module per concern:

- ``templates``: the compiled template and the checks on it and on a run's parameters (no credentials, right
  project);
- ``jobs``: the PipelineJob, CreatePipelineJob and CreateSchedule requests, submit, schedule and publish;
- ``compare``: one row per run, from a Vertex AI Experiment or from the kfp.local run folders;
- ``commands``: the click commands (``submit``, ``schedule``, ``compare``, ``publish``).

Every request is built with the real client libraries; ``--dry-run`` prints it instead of sending it. No
parameter may carry a password: the database password is named by a Secret Manager reference and read where
it is used.
"""
