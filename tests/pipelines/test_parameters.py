"""Pipeline parameters from the command line: typed against the pipeline spec, validated before anything runs."""

from __future__ import annotations

import pytest

from pipelines import parameters
from pipelines.parameters import ParameterError

SPEC = {
    "root": {
        "inputDefinitions": {
            "parameters": {
                "start": {"parameterType": "STRING", "defaultValue": ""},
                "end": {"parameterType": "STRING", "defaultValue": ""},
                "as_of": {"parameterType": "STRING", "defaultValue": ""},
                "train_days": {"parameterType": "NUMBER_INTEGER", "defaultValue": 60.0},
                "parity_rel_tol": {"parameterType": "NUMBER_DOUBLE", "defaultValue": 1e-9},
                "compare_with_legacy": {"parameterType": "BOOLEAN", "defaultValue": True},
                "experiment": {"parameterType": "STRING", "defaultValue": ""},
            }
        }
    }
}


def test_pairs_are_typed_against_the_spec():
    values = parameters.resolve(
        SPEC,
        parameters.parse_pairs(["train_days=30", "parity_rel_tol=1e-6", "compare_with_legacy=false", "end=2026-08-31"]),
        named={"start": "2026-08-01"},
    )
    assert values == {
        "train_days": 30,
        "parity_rel_tol": 1e-6,
        "compare_with_legacy": False,
        "end": "2026-08-31",
        "start": "2026-08-01",
    }


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["as_of=2026-13-45"], "as_of must be a date YYYY-MM-DD"),
        (["start=20260801"], "start must be a date YYYY-MM-DD"),
        (["start=2026-09-01", "end=2026-08-01"], "start 2026-09-01 is after end 2026-08-01"),
        (["train_days=0"], "train_days must be a number >= 1, got 0"),
        (["parity_rel_tol=-1"], "parity_rel_tol must be a number >= 0"),
        (["train_days=thirty"], "'train_days' expects NUMBER_INTEGER"),
        (["compare_with_legacy=maybe"], "'compare_with_legacy' expects BOOLEAN"),
        (["trian_days=3"], "the pipeline has no parameter 'trian_days'"),
        (["experiment=mine"], r"--param experiment=… is set by this command; use --experiment instead"),
    ],
)
def test_bad_values_are_refused_with_what_is_expected(pairs, message):
    with pytest.raises(ParameterError, match=message):
        parameters.resolve(SPEC, parameters.parse_pairs(pairs), reserved={"experiment": "--experiment"})


def test_a_parameter_given_twice_is_refused():
    with pytest.raises(ParameterError, match="train_days given twice"):
        parameters.resolve(SPEC, {"train_days": "30"}, named={"train_days": 40})


def test_a_pair_without_equals_is_refused_without_echoing_it():
    with pytest.raises(ParameterError) as raised:
        parameters.parse_pairs(["s3cr3t-value"])
    assert "s3cr3t-value" not in str(raised.value)


def test_every_parameter_of_the_local_pipeline_is_settable():
    """run-local reaches every parameter of the pipeline through --param, typed as the pipeline declares."""
    spec = parameters.local_pipeline_spec()
    names = set(parameters.spec_parameters(spec))
    assert {"as_of", "train_days", "holdout_days", "legacy_n_trials", "parity_rel_tol", "model_root"} <= names
    values = parameters.resolve(spec, {"holdout_days": "5", "forecast_gate_tolerance": "0.1", "model_root": "/m"})
    assert values == {"holdout_days": 5, "forecast_gate_tolerance": 0.1, "model_root": "/m"}


SPEC_WITH_MODE = {
    "root": {
        "inputDefinitions": {
            "parameters": {
                **SPEC["root"]["inputDefinitions"]["parameters"],
                "mode": {"parameterType": "STRING", "defaultValue": "incremental"},
                "late_days": {"parameterType": "NUMBER_INTEGER", "defaultValue": 2.0},
            }
        }
    }
}


def test_dates_without_a_mode_are_a_backfill_and_the_default_run_is_incremental():
    assert parameters.resolve(SPEC_WITH_MODE, {}, named={"start": "2026-08-01"}) == {
        "start": "2026-08-01",
        "mode": "range",
    }
    assert parameters.resolve(SPEC_WITH_MODE, {"late_days": "5"}) == {"late_days": 5}
    assert parameters.resolve(SPEC_WITH_MODE, {"mode": "full"}) == {"mode": "full"}


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["mode=daily"], "mode must be one of incremental, range, full, got 'daily'"),
        (["mode=incremental", "start=2026-08-01"], r"start/end are for a backfill \(mode=range\), not for mode=incr"),
        (["mode=full", "end=2026-08-01"], r"start/end are for a backfill \(mode=range\), not for mode=full"),
        (["late_days=-1"], "late_days must be a number >= 0, got -1"),
    ],
)
def test_bad_modes_are_refused(pairs, message):
    with pytest.raises(ParameterError, match=message):
        parameters.resolve(SPEC_WITH_MODE, parameters.parse_pairs(pairs))
