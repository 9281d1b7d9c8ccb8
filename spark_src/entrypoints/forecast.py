"""Dataproc Serverless entry file (main_python_file_uri) of the forecast job; spark_src itself comes as a zip."""

from spark_src.forecast.main import main

if __name__ == "__main__":
    main()
