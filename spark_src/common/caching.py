"""Caching that is given back: a job or a fit caches DataFrames into a list and releases the list when it is done,
whether it returns or fails, so a session that runs it again (tests, the benchmark, a notebook) holds no earlier
run's rows and caching the same plan again does not make Spark warn that it is already cached."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import DataFrame


def cached(frame: DataFrame, frames: list[DataFrame]) -> DataFrame:
    """``frame``, cached, and added to ``frames``: what the caller releases (:func:`release`) when it is done."""
    frames.append(frame.cache())
    return frame


def release(frames: list[DataFrame]) -> None:
    """Unpersists ``frames`` (the newest first) and empties the list."""
    while frames:
        frames.pop().unpersist()


@contextmanager
def released() -> Iterator[list[DataFrame]]:
    """A list for :func:`cached` frames, released when the block ends, by return or by exception."""
    frames: list[DataFrame] = []
    try:
        yield frames
    finally:
        release(frames)
