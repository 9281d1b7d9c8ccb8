"""Command line of the project: compile the pipeline, run it locally, or run the whole demo.

python -m pipelines.cli demo        # embedded PostgreSQL + synthetic data + the local pipeline
python -m pipelines.cli compile     # writes compiled/*.yaml
python -m pipelines.cli run-local   # the local pipeline against the database of DB_URL / DB_HOST...
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import click

from components.base_image import component_base_image
from pipelines import errors, parameters
from pipelines import local_run as lr
from pipelines.errors import Failure, HandledGroup
from pipelines.local_run import LocalRun, run_local
from pipelines.preflight import check_database
from pipelines.settings import (
    COMPILED_DIR,
    LOCAL_DIR,
    PLACEHOLDER_MARKERS,
    GcpSettings,
    PlaceholderSettings,
    load_dotenv,
)
from spark_src.common import sql
from spark_src.common.config import DbConfig


def _step(message: str) -> float:
    click.secho(f"==> {message}", fg="cyan", err=True)
    return time.monotonic()


def _done(started: float) -> None:
    click.secho(f"    done in {time.monotonic() - started:.1f} s", fg="cyan", err=True)


@click.group(cls=HandledGroup)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """DeFi pool metrics and forecasts: Spark jobs in a KFP pipeline."""
    load_dotenv()  # before the subcommand reads its options' environment variables (DB_URL, GCP_PROJECT, …)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def compile_pipelines(out_dir: Path = COMPILED_DIR, settings: GcpSettings | None = None) -> list[Path]:
    """Compiles the local and the Vertex variant to ``out_dir``; returns the written files.

    Args:
        out_dir: Target folder.
        settings: GCP settings baked into the Vertex variant; default: the documented placeholders, which is
            what ``compiled/`` holds (Cloud Build compiles with the real ones, from Terraform's outputs).
    """
    from kfp import compiler

    from pipelines.pool_pipeline import build_pipeline
    from pipelines.targets import LocalTarget, VertexTarget

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, target in (("local", LocalTarget()), ("vertex", VertexTarget(settings or GcpSettings()))):
        path = out_dir / f"pool_pipeline_{name}.yaml"
        compiler.Compiler().compile(build_pipeline(target), str(path))
        written.append(path)
    return written


@cli.command("compile")
@click.option("--out-dir", type=click.Path(path_type=Path), default=COMPILED_DIR, show_default=True)
@click.option(
    "--settings-from-env",
    is_flag=True,
    help="Bake the GCP settings of the environment (GCP_PROJECT, …) into the Vertex variant instead of the "
    "placeholders committed in compiled/.",
)
def compile_command(out_dir: Path, settings_from_env: bool) -> None:
    """Compile the pipeline (local and Vertex variants) to YAML."""
    settings = None
    if settings_from_env:
        settings = GcpSettings.from_env()
        image = component_base_image()
        if any(marker in image for marker in PLACEHOLDER_MARKERS):
            # Read from the real environment only (see components.base_image): .env.gcp holds it, but is not read
            # for it.
            raise PlaceholderSettings(
                f"COMPONENT_BASE_IMAGE is the placeholder {image} (export it: it is read from the environment only)"
            )
    for path in compile_pipelines(out_dir, settings):
        click.echo(f"wrote {path}")


def _counts(metadata: dict) -> dict:
    """KFP may store numbers in artifact metadata as floats; counts read better as integers."""
    return {
        k: _counts(v) if isinstance(v, dict) else int(v) if isinstance(v, float) and v.is_integer() else v
        for k, v in metadata.items()
    }


def _print_run_range(run: LocalRun) -> None:
    run_range = run.find("run_range")
    if run_range:
        meta = _counts(run_range.metadata)
        click.echo(f"run range ({meta['mode']}): {meta['start']}..{meta['end']}, {meta['days']} days: {meta['reason']}")


def _print_cleanup(run: LocalRun) -> None:
    cleanup = run.find("cleanup")
    if cleanup:
        meta = _counts(cleanup.metadata)
        click.echo(
            f"cleanup of abandoned runs: {meta['runs_cleaned']} runs, {meta['tables_dropped']} tables dropped, "
            f"{meta['history_rows_deleted']} forecast history rows deleted, {meta['model_dirs_removed']} model "
            f"directories removed; {meta['unregistered_staging_tables']} unregistered stg_* tables left alone"
        )


def score_text(value: float | None) -> str:
    """A score as the run summary prints it: 4 decimals, or 4 significant digits from 1e6 up (a legacy MAE of
    4.8e299 on a 1e300 % APY would otherwise be 300 digits); ``n/a`` when the metric was not logged."""
    if value is None:
        return "n/a"
    return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.4g}"


def _print_evaluation(meta: dict) -> None:
    """The forecast gate's scores on the holdout, and what it promoted when the model lost."""
    rows = meta.get("forecast_rows_evaluated_apy")
    click.echo(f"forecast evaluation on {rows} holdout rows (next-day APY, percentage points):")
    for name in ("spark", "legacy", "naive"):
        click.echo(
            f"  {name:<7} MAE {score_text(meta.get(f'forecast_{name}_apy_mae'))}  "
            f"RMSE {score_text(meta.get(f'forecast_{name}_apy_rmse'))}  "
            f"WAPE {score_text(meta.get(f'forecast_{name}_apy_wape'))}   "
            f"TVL WAPE {score_text(meta.get(f'forecast_{name}_tvl_wape'))}"
        )
    if meta.get("forecast_promoted_naive") == 1:
        click.secho("forecast gate: the model lost; tomorrow's forecasts are persistence (model = naive)", fg="yellow")


def _print_run(run: LocalRun, fingerprint: tuple[int, str] | None = None) -> None:
    from pipelines.pool_pipeline import METRICS_TABLE  # kfp loads in a second: only once a run is there

    _print_cleanup(run)
    _print_run_range(run)
    staging = _counts(run.metadata("staging"))
    click.echo(
        f"pool metrics (Spark): {staging['pools']} pools, {staging['rows_written']} rows written to "
        f"{staging['staging_table']} ({staging['seconds']} s); rejected {json.dumps(staging['rejected'])}; "
        f"tvl set NULL {json.dumps(staging['tvl_nulled'])}; "
        f"{staging['observations_superseded']} superseded same-day observations; "
        f"{staging.get('active_pools_without_rows', 0)} active pools without any row"
    )
    legacy = run.find("shadow")
    if legacy and not legacy.metadata.get("skipped"):
        meta = _counts(legacy.metadata)
        click.echo(f"pool metrics (legacy pandas): {meta['pools']} pools, {meta['rows_written']} rows -> {legacy.uri}")
    parity = run.find("parity")
    if parity and "parity_pass" in parity.metadata:
        meta = _counts(parity.metadata)
        verdict = "PASS" if meta["parity_pass"] == 1 else "FAIL"
        click.secho(
            f"parity gate: {verdict}: {meta['parity_rows_compared']} rows compared, "
            f"{meta['parity_rows_missing_in_spark']} missing in Spark, {meta['parity_rows_missing_in_legacy']} "
            f"missing in legacy, {meta['parity_cells_mismatched']} cells beyond tolerance",
            fg="green" if verdict == "PASS" else "red",
        )
    elif parity:
        click.echo("parity gate: skipped (compare_with_legacy is off)")
    for staging, label in (("metrics_staging_table", "metrics"), ("forecast_staging_table", "forecasts")):
        promoted = run.promotion(staging, METRICS_TABLE)
        if promoted:
            meta = _counts(promoted.metadata)
            chosen = (
                f" (model {meta['model']}, {meta['rejected_implausible']} refused as implausible)"
                if ("model" in meta)
                else ""
            )
            click.echo(
                f"upsert of {label} into {meta['table']}: {meta['inserted']} inserted, {meta['updated']} updated, "
                f"{meta['unchanged']} unchanged{chosen}"
            )
    forecast = run.find("forecasts")
    model = forecast and run.sibling(forecast, "model")
    if forecast and model:
        meta = _counts(forecast.metadata)
        click.echo(
            f"forecast (SynapseML LightGBM): {meta['pools_forecast']} pools for {meta['forecast_date']} "
            f"(as of {meta['as_of']}, {meta['training_rows']} training rows); model {model.uri}; quarantined "
            f"{meta.get('quarantined', {})}, {meta.get('pools_not_forecast_quarantined', 0)} pools not forecast"
        )
    evaluation = run.find("forecast_metrics")
    if evaluation:
        _print_evaluation(_counts(evaluation.metadata))
    if fingerprint:
        click.echo(f"pool_daily_metrics: {fingerprint[0]} rows, md5 {fingerprint[1]}")
    click.echo(f"run folder: {run.root}")


def _print_paths(run: LocalRun) -> None:
    """The files a person opens after a run, as absolute paths: the last lines a run prints."""
    paths = {"run log": run.root / lr.RUN_LOG}
    reports = run.reports()
    for name, label in (("parity.md", "parity report"), ("forecast_report.html", "forecast report")):
        if name in reports:
            paths[label] = reports[name]
    forecast = run.find("forecasts")
    model = forecast and run.sibling(forecast, "model")
    if model:
        paths["model"] = Path(model.uri)
    for label, path in paths.items():
        click.echo(f"{label + ':':<17}{path.resolve()}")


@cli.command("lineage")
@click.argument("run_dir", required=False, type=click.Path(path_type=Path, exists=True, file_okay=False))
def lineage_command(run_dir: Path | None) -> None:
    """List the lineage artifacts (tables, model) of a local run (default: the latest)."""
    run = LocalRun(run_dir) if run_dir else lr.latest_run()
    if run.missing_tasks():
        raise Failure(
            f"the run {run.run_dir} did not finish, its lineage is incomplete",
            "see why with `defi-pipeline run-local` output or the run's reports; lineage of a finished run: "
            "`defi-pipeline lineage <run dir>`",
            errors.RUN_FAILED,
        )
    click.echo(f"lineage of {run.run_dir}")
    for item in run.lineage():
        meta = _counts(item["metadata"])
        if item["artifact"] == "model":
            detail = (
                f"model {meta.get('model')} as of {meta.get('as_of')}, {meta.get('training_rows')} training rows, "
                f"code {meta.get('code_version')}"
            )
        else:
            span = f"{meta['first_day']}..{meta['last_day']}" if meta.get("first_day") else "-"
            detail = f"{meta['role']:<8} {meta['rows']:>7} rows  {span}  code {meta['code_version']}"
        click.echo(f"  {item['uri']:<70} {detail}")


def _pipeline_options(command: Callable[..., None]) -> Callable[..., None]:
    """Named options for the common pipeline parameters, and ``--param KEY=VALUE`` for every one of them."""
    options = [
        click.option(
            "--param",
            "params",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any pipeline parameter, typed as the pipeline declares it (repeatable), e.g. "
            "--param forecast_gate_tolerance=0.1.",
        ),
        click.option(
            "--compare-with-legacy/--no-compare-with-legacy",
            default=None,
            help="Gate the promotion on parity with the legacy pandas job (pipeline default: on).",
        ),
        click.option("--legacy-n-trials", type=int, default=None, help="Optuna trials of the legacy forecaster."),
        click.option("--holdout-days", type=int, default=None, help="Backtest as-of dates before as_of."),
        click.option("--train-days", type=int, default=None, help="Training window of the forecasters, in days."),
        click.option("--as-of", default=None, help="Forecast from this day (YYYY-MM-DD); default: latest actuals."),
        click.option("--end", default=None, help="Last day (YYYY-MM-DD, inclusive); default: all."),
        click.option("--start", default=None, help="First day (YYYY-MM-DD); default: all."),
    ]
    for option in options:
        command = option(command)
    return command


_NAMED = ("start", "end", "as_of", "train_days", "holdout_days", "legacy_n_trials", "compare_with_legacy")


def _run_parameters(options: dict, reserved: dict[str, str]) -> dict:
    """The run's pipeline parameters from the named options given and ``--param``, typed and validated."""
    named = {name: options[name] for name in _NAMED if options.get(name) is not None}
    return parameters.resolve(
        parameters.local_pipeline_spec(), parameters.parse_pairs(options["params"]), named, reserved
    )


@cli.command("run-local")
@click.option("--database-url", envvar="DB_URL", help="postgresql://user@host:port/db (no password). Default: DB_*.")
@click.option("--password-secret", default=None, help="Secret reference of the password (default env:DB_PASSWORD).")
@_pipeline_options
def run_local_command(database_url: str | None, password_secret: str | None, **options) -> None:
    """Run the local pipeline against an existing PostgreSQL (its schema and raw data in place)."""
    values = _run_parameters(
        options, {"database_url": "--database-url or DB_URL", "password_secret": "--password-secret"}
    )
    db = DbConfig.from_url(database_url, password_secret or "env:DB_PASSWORD") if database_url else DbConfig.from_env()
    check_database(db)
    started = _step(f"running the local pipeline against {db.url}")
    run = run_local(db, **values)
    _done(started)
    _print_run(run)
    _print_paths(run)


@cli.command("demo")
@click.option("--pools", default=24, show_default=True, help="Synthetic pools.")
@click.option("--days", default=120, show_default=True, help="Synthetic days.")
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--world",
    default="default",
    show_default=True,
    help="Synthetic dynamics (database/synthetic.py WORLDS): 'default', the demo's; 'hard' (1e3-1e9 % spikes, "
    "incentives, launches, regime changes); 'random_walk' (nothing beats tomorrow = today).",
)
@click.option("--runs", default=2, show_default=True, help="Pipeline runs; the second shows the upsert is idempotent.")
@click.option(
    "--database-url",
    default=None,
    help="Use this PostgreSQL (empty database, password in DB_PASSWORD) instead of the embedded one.",
)
@_pipeline_options
def demo_command(pools: int, days: int, seed: int, world: str, runs: int, database_url: str | None, **options) -> None:
    """Start a throwaway PostgreSQL, load synthetic data, run the local pipeline (twice by default)."""
    import contextlib

    from database.embedded import embedded_postgres
    from database.schema import init_schema
    from database.synthetic import SyntheticSpec, generate, load
    from pipelines.local_run import table_fingerprint

    reserved = {"database_url": "--database-url", "password_secret": "DB_PASSWORD (the demo sets it)"}
    values = _run_parameters(options, reserved)  # refused before the database starts
    try:
        spec = SyntheticSpec(pools=pools, days=days, seed=seed, world=world)
    except ValueError as error:
        raise parameters.ParameterError(str(error)) from None
    with contextlib.ExitStack() as stack:
        if database_url:
            db = DbConfig.from_url(database_url)
            check_database(db, required_tables=())  # empty: the demo creates the schema
        else:
            started = _step("starting the embedded PostgreSQL (pgserver binaries, 127.0.0.1, free port)")
            with warnings.catch_warnings():
                # pgserver asks platformdirs for a runtime folder; without XDG_RUNTIME_DIR (root in a container)
                # it uses /tmp/runtime-<uid>, which is what we want anyway.
                warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
                pg = stack.enter_context(embedded_postgres(root=LOCAL_DIR / "postgres"))
            os.environ["DB_PASSWORD"] = pg.password  # resolved by env:DB_PASSWORD in every step
            db = pg.config
            _done(started)
        engine = stack.enter_context(sql.engine(db))

        started = _step(
            f"creating the schema and loading synthetic data ({pools} pools x {days} days, seed {seed}, world {world})"
        )
        init_schema(engine)
        data = generate(spec)
        loaded = load(engine, data)
        click.echo("loaded " + ", ".join(f"{count} {table}" for table, count in loaded.items()))
        planted = {key: value for key, value in data.stats.items() if key not in loaded and value}
        kinds = ", ".join(f"{key} {value}" for key, value in planted.items())
        click.echo(f"planted imperfections (database/synthetic.py): {kinds}")
        _done(started)

        fingerprints = []
        for run in range(1, runs + 1):
            note = " (kfp.local; the first run on a machine downloads the jars)" if run == 1 else ""
            started = _step(f"pipeline run {run}/{runs}{note}")
            run_result = run_local(db, **values)
            _done(started)
            fingerprints.append(table_fingerprint(engine))
            _print_run(run_result, fingerprints[-1])
        if runs > 1:
            same = len(set(fingerprints)) == 1
            click.secho(f"pool_daily_metrics identical across runs: {same}", fg="green" if same else "red", bold=True)
            if not same:
                raise SystemExit(1)
        click.echo("tables and model of the last run: defi-pipeline lineage")
        _print_paths(run_result)


def _register_gcp_commands() -> None:
    from pipelines.deploy import gcp_settings_command, package_command, stage_command
    from pipelines.gcp_smoke import gcp_smoke_command
    from pipelines.vertex.commands import compare_command, publish_command, schedule_command, submit_command

    for command in (
        submit_command,
        schedule_command,
        compare_command,
        publish_command,
        package_command,
        stage_command,
        gcp_settings_command,
        gcp_smoke_command,
    ):
        cli.add_command(command)


_register_gcp_commands()

if __name__ == "__main__":
    cli()
