"""Dataproc Serverless entry file (main_python_file_uri) of the smoke batch (``gcp-smoke``)."""

from spark_src.smoke.main import main

if __name__ == "__main__":
    main()
