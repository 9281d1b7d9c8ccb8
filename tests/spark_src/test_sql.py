"""The one SQL identifier check: plain lower-case names of at most 63 characters, matched in full."""

from __future__ import annotations

import pytest

from spark_src.common.sql import check_identifier, check_identifiers


@pytest.mark.parametrize("name", ["pools", "_x", "stg_pool_metrics_1a2b", "a" * 63])
def test_plain_lower_case_names_pass(name):
    assert check_identifier(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "pools\n",  # `^…$` with re.match accepts a trailing newline; fullmatch does not
        "Pools",
        "1pools",
        "public.pools",
        'x"; DROP TABLE pools; --',
        "",
        "a" * 64,  # PostgreSQL truncates longer names
        None,
    ],
)
def test_anything_else_is_refused_and_named(name):
    with pytest.raises(ValueError, match="not a plain lower-case SQL identifier"):
        check_identifier(name)


def test_check_identifiers_stops_at_the_first_bad_name():
    check_identifiers("a", "b")
    with pytest.raises(ValueError, match="'B'"):
        check_identifiers("a", "B", "c")
