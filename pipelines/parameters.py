"""Pipeline parameters as a person sets them: ``KEY=VALUE`` pairs typed against the pipeline spec, and the
dates and ranges checked before anything starts (kfp.local, a Vertex submission or a schedule).

The same functions serve ``run-local``/``demo`` (against the local pipeline's spec) and ``submit``/``schedule``
(against the template that is submitted), so a value refused by one is refused by all.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from spark_src.pool_metrics.run_range import MODES as RUN_MODES

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# (parameter, smallest allowed value): a window of 0 days or a negative tolerance cannot be meant.
_MINIMUM = {
    "train_days": 1,
    "holdout_days": 1,
    "legacy_n_trials": 1,
    "parity_rel_tol": 0,
    "forecast_gate_tolerance": 0,
    "late_days": 0,
    "stale_after_minutes": 0,
}
_DATES = ("start", "end", "as_of")


class ParameterError(ValueError):
    """A pipeline parameter that is unknown, mistyped, out of range, or set by the tool itself."""


def spec_parameters(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{name: input definition (``parameterType``, ``defaultValue``…)} of a pipeline spec (as a dict)."""
    return dict(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))


def local_pipeline_spec() -> dict[str, Any]:
    """The local pipeline's spec as a dict (what ``compile`` writes to ``compiled/pool_pipeline_local.yaml``)."""
    from google.protobuf import json_format

    from pipelines.pool_pipeline import pool_pipeline

    return json_format.MessageToDict(pool_pipeline.pipeline_spec)


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``("train_days=30", …)`` → ``{"train_days": "30"}``.

    Raises:
        ParameterError: an argument without ``=`` or without a key (the argument is not echoed: it may be a
            value that was meant to stay private).
    """
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParameterError("--param expects KEY=VALUE (an argument has no '=' or no key)")
        values[key.strip()] = value
    return values


def coerce(spec: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Converts string values to the type the spec declares; non-string values pass unchanged.

    Vertex stores a parameter value as given: the string "30" for an integer parameter would fail only when the
    run starts.

    Raises:
        ParameterError: an unknown parameter or a value that does not parse as the declared type.
    """
    definitions = spec_parameters(spec)
    typed = {}
    for name, value in values.items():
        if name not in definitions:
            raise ParameterError(f"the pipeline has no parameter {name!r}; known: {', '.join(sorted(definitions))}")
        kind = definitions[name].get("parameterType", "STRING")
        typed[name] = _parse(name, value, kind) if isinstance(value, str) else value
    return typed


def _parse(name: str, text: str, kind: str) -> Any:
    try:
        if kind == "NUMBER_INTEGER":
            return int(text)
        if kind == "NUMBER_DOUBLE":
            return float(text)
        if kind == "BOOLEAN":
            return {"true": True, "false": False}[text.strip().lower()]
        if kind in ("LIST", "STRUCT"):
            return json.loads(text)
    except (ValueError, KeyError) as err:
        raise ParameterError(f"parameter {name!r} expects {kind}, got {text!r}") from err
    return text


def _dates(values: Mapping[str, Any]) -> dict[str, dt.date]:
    """The date parameters that are set, parsed; a ParameterError for one that is not ``YYYY-MM-DD``."""
    dates = {}
    for name in _DATES:
        value = values.get(name)
        if value in (None, ""):
            continue
        try:
            if not (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
                raise ValueError
            dates[name] = dt.date.fromisoformat(value)
        except ValueError:
            raise ParameterError(f"{name} must be a date YYYY-MM-DD (or empty), got {value!r}") from None
    return dates


def validate(values: Mapping[str, Any]) -> None:
    """Checks the dates (ISO ``YYYY-MM-DD`` or empty, ``start <= end``) and the ranges of numeric parameters.

    Raises:
        ParameterError: the first value that cannot be right, named with what is expected.
    """
    dates = _dates(values)
    if "start" in dates and "end" in dates and dates["start"] > dates["end"]:
        raise ParameterError(f"start {dates['start']} is after end {dates['end']}")
    mode = values.get("mode")
    if mode is not None:
        if mode not in RUN_MODES:
            raise ParameterError(f"mode must be one of {', '.join(RUN_MODES)}, got {mode!r}")
        if mode != "range" and ("start" in dates or "end" in dates):
            raise ParameterError(f"start/end are for a backfill (mode=range), not for mode={mode}")
    for name, minimum in _MINIMUM.items():
        value = values.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
            raise ParameterError(f"{name} must be a number >= {minimum}, got {value!r}")


def refuse_reserved(params: Mapping[str, Any], reserved: Mapping[str, str]) -> None:
    """Refuses a ``--param`` for a parameter the command sets itself (``reserved``: name → option to use).

    Raises:
        ParameterError: names the option to use instead.
    """
    for name, option in reserved.items():
        if name in params:
            raise ParameterError(f"--param {name}=… is set by this command; use {option} instead")


def with_defaults_validated(spec: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` typed against ``spec`` and validated together with the spec's defaults (the run's values).

    Raises:
        ParameterError: see :func:`coerce` and :func:`validate`.
    """
    typed = coerce(spec, values)
    # Dates given without a mode ask for a backfill of those dates: say so, rather than let the default
    # (incremental) refuse them. The mode is then explicit in the run's parameters.
    if "mode" in spec_parameters(spec) and "mode" not in typed and any(typed.get(k) for k in ("start", "end")):
        typed["mode"] = "range"
    defaults = {name: d["defaultValue"] for name, d in spec_parameters(spec).items() if "defaultValue" in d}
    validate({**defaults, **typed})
    return typed


def resolve(
    spec: Mapping[str, Any],
    params: Mapping[str, str],
    named: Mapping[str, Any] | None = None,
    reserved: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The parameter values of one run: ``--param`` pairs and named options, typed and validated.

    Args:
        spec: The pipeline spec the values are for.
        params: ``--param`` values (strings).
        named: Values of the command's named options that were given (``--train-days 30`` → ``train_days``).
        reserved: Parameters the command sets itself, with the option to use instead (``experiment`` →
            ``--experiment``): a ``--param`` for one of them is refused, not silently dropped.

    Raises:
        ParameterError: a reserved or doubly-given parameter, or any error of :func:`coerce`/:func:`validate`.
    """
    named = dict(named or {})
    refuse_reserved(params, reserved or {})
    twice = sorted(set(params) & set(named))
    if twice:
        flag = "--" + twice[0].replace("_", "-")
        raise ParameterError(f"{twice[0]} given twice (--param and {flag}); give it once")
    return with_defaults_validated(spec, {**params, **named})
