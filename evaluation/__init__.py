"""The evaluations the pipeline gates on, as plain modules: the metrics parity of the Spark and legacy jobs
(``parity``) and the backtest of the next-day forecasters (``forecasts``, report in ``forecast_report``). The
components in ``components/`` only parse their inputs, call these and write the outputs."""
