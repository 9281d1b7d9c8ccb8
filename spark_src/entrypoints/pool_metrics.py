"""Dataproc Serverless entry file (main_python_file_uri) of the pool_metrics job; spark_src itself comes as a zip."""

from spark_src.pool_metrics.main import main

if __name__ == "__main__":
    main()
