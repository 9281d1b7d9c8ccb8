"""How much of tomorrow's TVL the demo's synthetic data lets any model predict: persistence against an oracle.

    .venv/bin/python -m benchmarks.tvl_predictability --pools 24 --days 120 --seed 7 --holdout-days 3

The generator (``database.synthetic``) moves TVL by a daily log-flow of ``0.01 * relative APY of yesterday +
N(0, 0.015)``. The oracle knows that drift exactly (it recomputes it from the generator's own series); persistence
says tomorrow = today. If even the oracle barely beats persistence, a fitted model cannot be expected to: its
estimation error is larger than the signal. Figures, not assertions.
"""

from __future__ import annotations

import argparse

import numpy as np

from database import synthetic


def tvl_predictability(spec: synthetic.SyntheticSpec, holdout_days: int) -> dict[str, float]:
    """Share of the daily log-flow variance that is predictable, and TVL WAPEs of persistence and the oracle."""
    rng = np.random.default_rng(spec.seed)  # the draws of synthetic.generate, in its order
    _, group_idx = synthetic._pool_table(rng, spec.pools)
    markets = synthetic._markets(rng, spec.days)
    gas = synthetic._gas(rng, spec.start, spec.days)
    apy, tvl, _ = synthetic._apy_tvl(rng, group_idx, markets["ETH"]["log_ret"], gas)

    groups = len(synthetic.POOL_GROUPS)
    group_mean = np.zeros((groups, spec.days))
    np.add.at(group_mean, group_idx, apy)
    group_mean /= np.maximum(np.bincount(group_idx, minlength=groups), 1)[:, None]
    relative = (apy - group_mean[group_idx]) / np.maximum(group_mean[group_idx], 0.5)
    flow = np.diff(np.log(tvl), axis=1)  # flow[:, t]: from day t to day t + 1
    drift = 0.01 * relative[:, :-1]

    figures = {"predictable_share_of_variance": float(drift.var() / flow.var())}
    for label, days in (("holdout", slice(-holdout_days, None)), ("all", slice(None))):
        today, tomorrow = tvl[:, :-1][:, days], tvl[:, 1:][:, days]
        scale = tomorrow.sum()
        figures[f"{label}_persistence_wape"] = float(np.abs(today - tomorrow).sum() / scale)
        figures[f"{label}_oracle_wape"] = float(np.abs(today * np.exp(drift[:, days]) - tomorrow).sum() / scale)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=24)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout-days", type=int, default=3)
    args = parser.parse_args()
    figures = tvl_predictability(synthetic.SyntheticSpec(pools=args.pools, days=args.days, seed=args.seed),
                                 args.holdout_days)  # fmt: skip
    print(f"predictable share of the daily TVL log-flow variance: {figures['predictable_share_of_variance']:.3f}")
    for label, text in (("holdout", f"last {args.holdout_days} forecast days"), ("all", "all days")):
        print(
            f"TVL WAPE, {text}: persistence {figures[f'{label}_persistence_wape']:.4f}, "
            f"oracle {figures[f'{label}_oracle_wape']:.4f}"
        )


if __name__ == "__main__":
    main()
