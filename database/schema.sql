-- Schema of the pool-metrics platform. Idempotent: safe to run on every start.
-- `pools`, the raw tables and `gas_fees_daily` are maintained upstream (ingestion jobs);
-- `pool_daily_metrics` is written by the metrics and forecast pipelines through staging-table upserts.

CREATE TABLE IF NOT EXISTS pools (
    pool_id          text PRIMARY KEY,
    symbol           text NOT NULL,
    chain            text NOT NULL,
    project          text NOT NULL,
    pool_group       text,
    is_active        boolean NOT NULL DEFAULT true,
    is_filtered_out  boolean NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS raw_defillama_pool_history (
    id             bigserial PRIMARY KEY,
    pool_id        text NOT NULL REFERENCES pools (pool_id),
    "timestamp"    timestamptz NOT NULL,
    raw_json_data  jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS raw_defillama_pool_history_pool_ts
    ON raw_defillama_pool_history (pool_id, "timestamp");
-- A run of a few days reads the look-back window (its days - 30 .. its last day) of every pool: a range on
-- "timestamp" alone, which the (pool_id, "timestamp") index cannot serve. Also answers min/max("timestamp").
CREATE INDEX IF NOT EXISTS raw_defillama_pool_history_ts
    ON raw_defillama_pool_history ("timestamp");

CREATE TABLE IF NOT EXISTS raw_coinmarketcap_ohlcv (
    id              bigserial PRIMARY KEY,
    symbol          text NOT NULL,
    data_timestamp  timestamptz NOT NULL,
    raw_json_data   jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS raw_coinmarketcap_ohlcv_symbol_ts
    ON raw_coinmarketcap_ohlcv (symbol, data_timestamp);

CREATE TABLE IF NOT EXISTS gas_fees_daily (
    date                 date PRIMARY KEY,
    actual_avg_gas_gwei  numeric
);

CREATE TABLE IF NOT EXISTS pool_daily_metrics (
    pool_id                    text NOT NULL,
    date                       date NOT NULL,
    actual_apy                 double precision,
    forecasted_apy             double precision,
    actual_tvl                 double precision,
    forecasted_tvl             double precision,
    rolling_apy_7d             double precision,
    rolling_apy_30d            double precision,
    apy_delta_today_yesterday  double precision,
    stddev_apy_7d              double precision,
    stddev_apy_30d             double precision,
    stddev_apy_7d_delta        double precision,
    stddev_apy_30d_delta       double precision,
    eth_open                   double precision,
    btc_open                   double precision,
    gas_price_gwei             double precision,
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool_id, date)
);

-- Every forecast of every run (production forecasts for as_of + 1 and backtests on holdout as-of dates), for
-- backtests and model comparison. `forecast_date` is the day forecast; `as_of` the last day of actuals used.
CREATE TABLE IF NOT EXISTS pool_forecast_history (
    pool_id         text NOT NULL,
    forecast_date   date NOT NULL,
    model           text NOT NULL,
    run_id          text NOT NULL,
    as_of           date NOT NULL,
    forecasted_apy  double precision,
    forecasted_tvl  double precision,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool_id, forecast_date, model, run_id)
);

-- Which forecaster's numbers `forecasted_*` hold: the Spark model, or `naive` (persistence) when the model lost
-- to persistence on the run's holdout (see README "Forecasting"). NULL for rows never forecast.
ALTER TABLE pool_daily_metrics ADD COLUMN IF NOT EXISTS forecast_model text;

-- Observations the forecast job found implausible (README "Plausibility quarantine"): kept out of the
-- forecasters' training and features, never removed from pool_daily_metrics. One row per run that flagged it.
CREATE TABLE IF NOT EXISTS pool_observation_quarantine (
    pool_id      text NOT NULL,
    date         date NOT NULL,
    column_name  text NOT NULL,
    run_id       text NOT NULL,
    value        double precision,
    reference    double precision,
    reason       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool_id, date, column_name, run_id)
);

-- One row per pipeline run, written by its first step and closed by its last: the cleanup step of a later run
-- finds the runs that never finished (killed, crashed, failed) and removes what they left (staging and shadow
-- tables named stg_*_<run_id>, their forecast history rows, their model directory).
CREATE TABLE IF NOT EXISTS pipeline_runs (
    run_id       text PRIMARY KEY,
    status       text NOT NULL CHECK (status IN ('running', 'succeeded', 'cleaned')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    model_dir    text NOT NULL DEFAULT '',
    cleanup      jsonb
);
