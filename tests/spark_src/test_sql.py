"""The one SQL identifier check (plain lower-case names of at most 63 characters, matched in full) and the
table-exists check built on it."""

from __future__ import annotations

import pytest

from spark_src.common.sql import check_identifier, check_identifiers, table_exists


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


def test_table_exists_resolves_the_name_as_unqualified_sql_would(db):
    """Real PostgreSQL: a table on the search path exists, a missing one or one only in another schema does not
    (the unqualified SQL after the check would not reach it either), and a name that is not a plain identifier is
    refused before any SQL is built."""
    with db.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS elsewhere; CREATE TABLE elsewhere.stg_other (x int)")
        try:
            assert table_exists(conn, "pools") is True
            assert table_exists(conn, "stg_missing") is False
            assert table_exists(conn, "stg_other") is False
            with pytest.raises(ValueError, match="not a plain lower-case SQL identifier: 'Pools'"):
                table_exists(conn, "Pools")
        finally:
            conn.exec_driver_sql("DROP SCHEMA elsewhere CASCADE")
