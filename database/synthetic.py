"""Deterministic synthetic DeFiLlama / CoinMarketCap data for the demo and the tests, sized by pools and days.

:func:`generate` draws everything from one ``numpy.random.Generator`` seeded by ``SyntheticSpec.seed``, in a
fixed order, so the same spec always gives the same rows (and the same JSON text); :func:`load` appends the
rows to the four upstream tables (``pools``, ``raw_defillama_pool_history``, ``raw_coinmarketcap_ohlcv``,
``gas_fees_daily``) in one transaction.

Model (all vectorised over pools; the only Python loop over days is the AR(1)/OU recursion):

- Markets: ETH and BTC daily closes are geometric random walks (start 3000 / 60000, daily vol 3% / 2.5%);
  a CMC row per symbol and day at 23:59:59 UTC, ``{"USD": {open, high, low, close, volume}}`` with
  open = previous close.
- Gas: log-normal around ~28 gwei, higher on weekdays than at weekends, AR(1) noise (~20-40 gwei).
- Pools: :data:`POOL_GROUPS` sets each group's base APY (in percent, as DeFiLlama: 5.3 means 5.3%) and how
  much it reacts to the market. A pool's target is ``base * (1 + pool offset) * exp(group factor)``, where
  the group factor is a shared AR(1) in log space. The pool's latent APY follows an Ornstein-Uhlenbeck step
  toward that target (``theta`` = 0.25 per day), plus process noise. The observed APY adds, for the eth-ish
  groups, ``eth_beta * yesterday's ETH log-return + gas_beta * yesterday's relative gas level`` and
  measurement noise (iid, as DeFiLlama's 24h fee-based APYs jitter); it is clipped at 0 and ~1.5% of
  pool-days are one-day spikes (APY times 2 to 4). So tomorrow's APY is well predicted by today's APY, its rolling
  mean, the group level and today's ETH return, but naive persistence is not perfect (it carries today's
  noise and ignores the pull back to the level).
- TVL: a random walk in log space (start log-uniform in [1e5, 5e8]) whose daily flow follows yesterday's
  APY relative to its group's mean (higher APY attracts deposits).

Imperfections planted, all deterministic and counted in :attr:`SyntheticData.stats`:

- missing pool-days (~3.5% at random after a pool's first day, plus a run of 3-6 consecutive missing days
  for ~12% of the pools); a pool's first day is always present;
- duplicate pool-days (~3% of the present ones have 2-3 rows with different timestamps and slightly
  different values; the row with the latest timestamp carries the day's value and is the one that counts);
- inactive pools (8%, ``is_active`` false) that keep their history; filtered-out pools (10%);
- late-start pools (20%, first history day uniform in [10, days // 2]);
- bad values, each kind on ~0.3% of the history rows and at least once (given a few rows): apy key absent,
  apy null, apy ``"n/a"``, ``"NaN"``, ``"Infinity"`` (JSON has no NaN/Infinity numbers, so they travel as
  strings); tvlUsd absent, negative, ``"NaN"``. Every bad value sits on the latest row of its pool-day
  (which is the only row for most pool-days), so it is the value that counts for that day and its effect is
  plain to see. All bad rows are distinct, so each one has exactly one problem; on a bad-apy row
  apyBase/apyReward are null;
- two observations of one pool on consecutive days at 23:59:30 UTC and 00:00:30 UTC (the only rows of those
  pool-days), so that reading the date in any zone other than UTC merges them into one day;
- CMC: ~3% of the days missing per symbol (never the first day) and a few days with a second, earlier row
  with slightly different values; gas: ~2% of the dates missing (never the first).
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import uuid
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Engine

MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class PoolGroup:
    """A family of pools that share a yield level and its market drivers."""

    name: str
    base_apy: float  # percent
    eth_beta: float  # percentage points of APY per unit of yesterday's ETH log-return
    gas_beta: float  # percentage points of APY per unit of yesterday's gas relative to its mean
    has_rewards: bool  # whether some pools pay part of their APY as reward tokens (apyReward)
    symbols: tuple[str, ...]
    projects: tuple[str, ...]


POOL_GROUPS: tuple[PoolGroup, ...] = (
    PoolGroup(
        "stable-lending",
        3.0,
        0.0,
        0.0,
        False,
        ("USDC", "USDT", "DAI"),
        ("aave-v3", "compound-v3", "morpho-blue", "spark"),
    ),
    # AMM fees grow with trading, which follows ETH's moves.
    PoolGroup(
        "stable-amm",
        6.0,
        15.0,
        0.0,
        True,
        ("USDC-USDT", "DAI-USDC", "DAI-USDC-USDT"),
        ("curve-dex", "uniswap-v3", "balancer-v2"),
    ),
    # Staking yield = issuance + priority fees and MEV, which rise with on-chain activity (gas) and ETH's moves.
    PoolGroup(
        "lsd-eth",
        4.0,
        25.0,
        1.5,
        False,
        ("STETH", "RETH", "CBETH", "WSTETH"),
        ("lido", "rocket-pool", "coinbase-wrapped-staked-eth"),
    ),
    PoolGroup("stable-yield-vault", 9.0, 0.0, 0.0, True, ("USDC", "DAI", "USDT"), ("yearn-finance", "beefy", "morpho")),
    PoolGroup("btc-lending", 2.0, 0.0, 0.0, False, ("WBTC", "CBBTC", "TBTC"), ("aave-v3", "compound-v3", "spark")),
)
CHAINS = ("Ethereum", "Arbitrum", "Base", "Polygon", "Optimism")
CHAIN_WEIGHTS = (0.4, 0.2, 0.2, 0.1, 0.1)

# name, start close, daily log-return vol, typical daily volume (USD)
_MARKETS = (("BTC", 60_000.0, 0.025, 3.0e10), ("ETH", 3_000.0, 0.03, 1.5e10))

BAD_APY_KINDS = ("missing", "null", "text", "nan", "infinity")
BAD_TVL_KINDS = ("missing", "negative", "nan")
_BAD_APY_VALUES = {"null": None, "text": "n/a", "nan": "NaN", "infinity": "Infinity"}

# Rates of the planted imperfections (see the module docstring).
INACTIVE_SHARE = 0.08
FILTERED_OUT_SHARE = 0.10
LATE_START_SHARE = 0.20
RANDOM_MISSING_RATE = 0.035
MISSING_RUN_SHARE = 0.12
DUPLICATE_RATE = 0.03
BAD_VALUE_RATE = 0.003
SPIKE_RATE = 0.015
CMC_MISSING_RATE = 0.03
CMC_DUPLICATE_RATE = 0.02
GAS_MISSING_RATE = 0.02


#: The APY/TVL dynamics :func:`generate` can draw: ``default`` (the demo's, described above), ``hard``
#: (:func:`_apy_tvl_hard`: what real pools do to a forecaster) and ``random_walk`` (log-APY and log-TVL are
#: pure random walks: nothing beats persistence, a check that a model does not overfit the other worlds).
WORLDS = ("default", "hard", "random_walk")
# Hard world rates (see _apy_tvl_hard).
GIANT_SPIKE_RATE = 0.003
INCENTIVE_SHARE = 0.4
REGIME_CHANGES_PER_GROUP = 2


@dataclass(frozen=True)
class SyntheticSpec:
    """Size, seed and dynamics (one of :data:`WORLDS`) of a synthetic data set."""

    pools: int = 24
    days: int = 120
    start: datetime.date = datetime.date(2026, 5, 1)
    seed: int = 7
    world: str = "default"

    def __post_init__(self) -> None:
        if self.pools < 1 or self.days < 2:
            raise ValueError(f"need at least 1 pool and 2 days, got pools={self.pools}, days={self.days}")
        if self.world not in WORLDS:
            raise ValueError(f"unknown world {self.world!r}; one of {', '.join(WORLDS)}")


@dataclass(frozen=True)
class SyntheticData:
    """The rows of the four upstream tables, plus what was planted in them.

    Attributes:
        pools: the columns of table ``pools``.
        pool_history: ``pool_id``, ``timestamp`` (tz-aware UTC), ``raw_json_data`` (dict).
        cmc_ohlcv: ``symbol``, ``data_timestamp`` (tz-aware UTC), ``raw_json_data`` (dict).
        gas_fees: ``date`` (datetime.date), ``actual_avg_gas_gwei`` (float).
        stats: counts of the planted imperfections and of the rows (see :func:`generate`).
    """

    pools: pd.DataFrame
    pool_history: pd.DataFrame
    cmc_ohlcv: pd.DataFrame
    gas_fees: pd.DataFrame
    stats: dict[str, int] = field(default_factory=dict)


def _choose(rng: np.random.Generator, candidates: np.ndarray, share: float, minimum: int = 0) -> np.ndarray:
    """About ``share`` of ``candidates`` (at least ``minimum``, at most all), drawn without replacement."""
    k = min(len(candidates), max(minimum, round(share * len(candidates))))
    return np.sort(rng.choice(candidates, size=k, replace=False)) if k else candidates[:0]


def _pool_table(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The ``pools`` rows and each pool's group index."""
    # Round-robin then shuffle: every group is represented as soon as there are enough pools.
    group_idx = rng.permutation(np.arange(n) % len(POOL_GROUPS))
    pool_ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]
    pick = rng.random((n, 2))
    chain_idx = rng.choice(len(CHAINS), size=n, p=CHAIN_WEIGHTS)
    inactive = np.zeros(n, dtype=bool)
    inactive[_choose(rng, np.arange(n), INACTIVE_SHARE, minimum=1 if n >= 4 else 0)] = True
    filtered_out = np.zeros(n, dtype=bool)
    filtered_out[_choose(rng, np.arange(n), FILTERED_OUT_SHARE, minimum=1 if n >= 4 else 0)] = True
    groups = [POOL_GROUPS[g] for g in group_idx]
    pools = pd.DataFrame(
        {
            "pool_id": pool_ids,
            "symbol": [g.symbols[int(p * len(g.symbols))] for g, p in zip(groups, pick[:, 0], strict=True)],
            "chain": [CHAINS[c] for c in chain_idx],
            "project": [g.projects[int(p * len(g.projects))] for g, p in zip(groups, pick[:, 1], strict=True)],
            "pool_group": [g.name for g in groups],
            "is_active": ~inactive,
            "is_filtered_out": filtered_out,
        }
    )
    return pools, group_idx


def _markets(rng: np.random.Generator, days: int) -> dict[str, dict[str, np.ndarray]]:
    """Daily OHLCV arrays per symbol (geometric random walks)."""
    out = {}
    for symbol, first_open, vol, volume in _MARKETS:
        log_ret = rng.normal(0.0, vol, days)
        close = first_open * np.exp(np.cumsum(log_ret))
        open_ = np.concatenate([[first_open], close[:-1]])
        wick = np.abs(rng.normal(0.0, 0.4 * vol, (2, days)))
        out[symbol] = {
            "log_ret": log_ret,
            "open": open_,
            "close": close,
            "high": np.maximum(open_, close) * np.exp(wick[0]),
            "low": np.minimum(open_, close) * np.exp(-wick[1]),
            "volume": volume * np.exp(rng.normal(0.0, 0.3, days)),
        }
    return out


def _gas(rng: np.random.Generator, start: datetime.date, days: int) -> np.ndarray:
    """Daily average gas price (gwei): weekday premium, log-normal AR(1) noise."""
    weekday = (start.weekday() + np.arange(days)) % 7
    seasonal = np.where(weekday < 5, 0.10, -0.20)
    shocks = rng.normal(0.0, 0.1, days)
    noise = np.empty(days)
    noise[0] = shocks[0]
    for t in range(1, days):
        noise[t] = 0.5 * noise[t - 1] + shocks[t]
    return 28.0 * np.exp(seasonal + noise)


def _apy_tvl(
    rng: np.random.Generator, group_idx: np.ndarray, eth_log_ret: np.ndarray, gas: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed daily APY (percent), TVL (USD) and the spike mask, each of shape (pools, days)."""
    n, days = len(group_idx), len(eth_log_ret)
    n_groups = len(POOL_GROUPS)
    base = np.array([g.base_apy for g in POOL_GROUPS])[group_idx]
    eth_beta = np.array([g.eth_beta for g in POOL_GROUPS])[group_idx]
    gas_beta = np.array([g.gas_beta for g in POOL_GROUPS])[group_idx]

    level = base * (1.0 + np.clip(rng.normal(0.0, 0.2, n), -0.5, 0.8))
    # Shared per-group factor: the whole group drifts together (rates cycles, incentives programmes).
    factor_shocks = rng.normal(0.0, 0.03, (n_groups, days))
    factor = np.empty((n_groups, days))
    factor[:, 0] = factor_shocks[:, 0]
    for t in range(1, days):
        factor[:, t] = 0.95 * factor[:, t - 1] + factor_shocks[:, t]
    target = level[:, None] * np.exp(factor[group_idx])

    theta = 0.25
    process_shocks = rng.normal(0.0, 1.0, (n, days)) * (0.06 * level)[:, None]
    latent = np.empty((n, days))
    latent[:, 0] = target[:, 0]
    for t in range(1, days):
        latent[:, t] = latent[:, t - 1] + theta * (target[:, t] - latent[:, t - 1]) + process_shocks[:, t]

    # Yesterday's market moves today's yield; known one day ahead, hence learnable next-day signal.
    eth_yesterday = np.concatenate([[0.0], eth_log_ret[:-1]])
    gas_yesterday = np.concatenate([[gas[0]], gas[:-1]]) / gas.mean() - 1.0
    exogenous = eth_beta[:, None] * eth_yesterday[None, :] + gas_beta[:, None] * gas_yesterday[None, :]
    measurement = rng.normal(0.0, 1.0, (n, days)) * (0.08 * level)[:, None]
    apy = np.maximum(latent + exogenous + measurement, 0.0)

    spikes = rng.random((n, days)) < SPIKE_RATE
    apy = np.where(spikes, apy * rng.uniform(2.0, 4.0, (n, days)), apy)

    # Deposits chase yield: the daily log-flow follows yesterday's APY relative to its group's mean.
    group_mean = np.zeros((n_groups, days))
    np.add.at(group_mean, group_idx, apy)
    group_mean /= np.maximum(np.bincount(group_idx, minlength=n_groups), 1)[:, None]
    relative = (apy - group_mean[group_idx]) / np.maximum(group_mean[group_idx], 0.5)
    flow = 0.01 * np.concatenate([np.zeros((n, 1)), relative[:, :-1]], axis=1) + rng.normal(0.0, 0.015, (n, days))
    flow[:, 0] = 0.0
    log_tvl0 = rng.uniform(np.log(1e5), np.log(5e8), n)
    tvl = np.exp(log_tvl0[:, None] + np.cumsum(flow, axis=1))
    return apy, tvl, spikes


def _ar1(rng: np.random.Generator, rows: int, days: int, phi: float, sd: float) -> np.ndarray:
    shocks = rng.normal(0.0, sd, (rows, days))
    out = np.empty((rows, days))
    out[:, 0] = shocks[:, 0]
    for t in range(1, days):
        out[:, t] = phi * out[:, t - 1] + shocks[:, t]
    return out


def _incentive_programmes(
    rng: np.random.Generator, level: np.ndarray, start_day: np.ndarray, days: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The ``hard`` world's incentive programmes: (reward APY, TVL drain after each programme, programmes)."""
    n = len(level)
    incentive = np.zeros((n, days))
    drain = np.zeros((n, days))
    programmes = 0
    for p in np.flatnonzero(rng.random(n) < INCENTIVE_SHARE):
        for _ in range(int(rng.integers(1, 3))):
            first = int(rng.integers(start_day[p], days))
            length = int(rng.integers(7, 41))
            last = min(first + length, days)
            reward = level[p] * rng.uniform(0.5, 3.0)
            decay = rng.uniform(0.0, 1.5) / length
            incentive[p, first:last] += reward * np.exp(-decay * np.arange(last - first))
            drain_days = int(rng.integers(3, 11))
            drain[p, last : last + drain_days] -= rng.uniform(0.03, 0.12)
            programmes += 1
    return incentive, drain, programmes


def _apy_tvl_hard(
    rng: np.random.Generator, group_idx: np.ndarray, eth_log_ret: np.ndarray, start_day: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """The ``hard`` world: what real pools do to a next-day forecaster. Shapes (pools, days).

    - regime changes: each group's level jumps by a factor exp(N(0, 0.5)) on ``REGIME_CHANGES_PER_GROUP`` days;
    - group co-movement with lags: a shared AR(1) group factor (log space) reaches each pool 0-3 days late;
    - incentive programmes (``INCENTIVE_SHARE`` of the pools, 1-2 each): a reward of 0.5-3x the pool's level
      starts on a day, decays with emissions and stops abruptly after 7-40 days; TVL chases it, then drains;
    - launches: a late-starting pool opens at 3-15x its level, decaying with a half-life of 2-10 days;
    - heavy-tailed noise: the latent APY is an OU process (theta 0.3) around that target, observed with
      Student-t(3) noise; 1.5 % of pool-days are 2-4x spikes and ``GIANT_SPIKE_RATE`` of them (at least one)
      are one-day spikes to 1e3-1e9 %;
    - TVL: a log random walk whose flow follows the pool's APY relative to its group, drains 3-12 %/day for
      3-10 days after an incentive ends, and the occasional exploit-like drain.
    """
    n, days = len(group_idx), len(eth_log_ret)
    n_groups = len(POOL_GROUPS)
    day = np.arange(days)[None, :]
    base = np.array([g.base_apy for g in POOL_GROUPS])[group_idx]
    eth_beta = np.array([g.eth_beta for g in POOL_GROUPS])[group_idx]
    level = base * (1.0 + np.clip(rng.normal(0.0, 0.25, n), -0.6, 1.0))

    regime = np.zeros((n_groups, days))
    change_days = rng.integers(5, days, (n_groups, REGIME_CHANGES_PER_GROUP))
    change_size = rng.normal(0.0, 0.5, (n_groups, REGIME_CHANGES_PER_GROUP))
    for g in range(n_groups):
        for change, size in zip(change_days[g], change_size[g], strict=True):
            regime[g, change:] += size
    factor = _ar1(rng, n_groups, days, 0.9, 0.06) + regime
    lag = rng.integers(0, 4, n)
    lagged = np.empty((n, days))
    for p in range(n):
        shifted = factor[group_idx[p]]
        lagged[p] = np.concatenate([np.full(lag[p], shifted[0]), shifted[: days - lag[p]]])
    target = level[:, None] * np.exp(lagged)

    incentive, drain, programmes = _incentive_programmes(rng, level, start_day, days)
    launches = np.flatnonzero(start_day > 0)
    launch = np.zeros((n, days))
    for p in launches:
        half_life = rng.uniform(2.0, 10.0)
        age = np.maximum(np.arange(days) - start_day[p], 0)
        launch[p] = level[p] * rng.uniform(3.0, 15.0) * 0.5 ** (age / half_life) * (np.arange(days) >= start_day[p])

    theta = 0.3
    process = rng.normal(0.0, 1.0, (n, days)) * (0.05 * level)[:, None]
    latent = np.empty((n, days))
    latent[:, 0] = target[:, 0]
    for t in range(1, days):
        latent[:, t] = latent[:, t - 1] + theta * (target[:, t] - latent[:, t - 1]) + process[:, t]
    eth_yesterday = np.concatenate([[0.0], eth_log_ret[:-1]])
    noise = rng.standard_t(3, (n, days)) * (0.06 * (level[:, None] + incentive))
    apy = np.maximum(latent + incentive + launch + eth_beta[:, None] * eth_yesterday[None, :] + noise, 0.0)

    spikes = rng.random((n, days)) < SPIKE_RATE
    apy = np.where(spikes, apy * rng.uniform(2.0, 4.0, (n, days)), apy)
    giant = rng.random((n, days)) < GIANT_SPIKE_RATE
    giant[int(rng.integers(n)), int(rng.integers(days // 2, days))] = True  # at least one, in the later half
    apy = np.where(giant, 10.0 ** rng.uniform(3.0, 9.0, (n, days)), apy)

    group_mean = np.zeros((n_groups, days))
    np.add.at(group_mean, group_idx, np.minimum(apy, 1e3))
    group_mean /= np.maximum(np.bincount(group_idx, minlength=n_groups), 1)[:, None]
    relative = np.clip((apy - group_mean[group_idx]) / np.maximum(group_mean[group_idx], 0.5), -1.0, 3.0)
    exploit = np.where(rng.random((n, days)) < 0.002, -rng.uniform(0.3, 0.9, (n, days)), 0.0)
    flow = (
        0.015 * np.concatenate([np.zeros((n, 1)), relative[:, :-1]], axis=1)
        + drain
        + exploit
        + rng.normal(0.0, 0.015, (n, days))
    )
    flow[:, 0] = 0.0
    log_tvl0 = rng.uniform(np.log(1e5), np.log(5e8), n)
    tvl = np.exp(log_tvl0[:, None] + np.cumsum(flow, axis=1))
    stats = {
        "regime_changes": n_groups * REGIME_CHANGES_PER_GROUP,
        "incentive_programmes": programmes,
        "launches": len(launches),
        "apy_giant_spikes": int((giant & (day >= start_day[:, None])).sum()),
    }
    return apy, tvl, spikes | giant, stats


def _apy_tvl_random_walk(rng: np.random.Generator, group_idx: np.ndarray, days: int) -> tuple[np.ndarray, ...]:
    """The ``random_walk`` world: log-APY and log-TVL are driftless Gaussian random walks (sd 0.05 and 0.02)."""
    n = len(group_idx)
    base = np.array([g.base_apy for g in POOL_GROUPS])[group_idx]
    apy = base[:, None] * np.exp(np.cumsum(rng.normal(0.0, 0.05, (n, days)), axis=1))
    tvl = np.exp(
        rng.uniform(np.log(1e5), np.log(5e8), n)[:, None] + np.cumsum(rng.normal(0.0, 0.02, (n, days)), axis=1)
    )
    return apy, tvl, np.zeros((n, days), dtype=bool)


def _presence(
    rng: np.random.Generator, n: int, days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Which pool-days have rows; first day per pool; pools with a missing run; the near-midnight pool-day."""
    start_day = np.zeros(n, dtype=int)
    late = _choose(rng, np.arange(n), LATE_START_SHARE) if days // 2 > 10 else np.arange(0)
    start_day[late] = rng.integers(10, days // 2 + 1, len(late))

    day = np.arange(days)[None, :]
    present = (day >= start_day[:, None]) & ~(rng.random((n, days)) < RANDOM_MISSING_RATE)
    present[np.arange(n), start_day] = True

    run_pools = _choose(rng, np.arange(n), MISSING_RUN_SHARE, minimum=1)
    run_len = rng.integers(3, 7, len(run_pools))
    run_pos = rng.random(len(run_pools))
    with_run = []
    for p, length, pos in zip(run_pools, run_len, run_pos, strict=True):
        # Strictly inside the pool's history: after its first day, before the last day.
        lo, hi = start_day[p] + 1, days - 1 - length
        if hi >= lo:
            first = lo + int(pos * (hi - lo + 1))
            present[p, first : first + length] = False
            with_run.append(p)

    # The near-midnight pair: a pool present from day 0, on two consecutive days mid-period.
    from_start = np.flatnonzero(start_day == 0)
    midnight_pool = int(from_start[rng.integers(len(from_start))])
    midnight_day = max(days // 2 - 1, 0)
    present[midnight_pool, midnight_day : midnight_day + 2] = True
    return present, start_day, np.array(with_run, dtype=int), (midnight_pool, midnight_day)


def _assign_bad_values(picked: np.ndarray, per_kind: int) -> tuple[dict[int, str], dict[int, str]]:
    """{row: kind} of the bad APY and bad TVL values: ``per_kind`` consecutive rows of ``picked`` per kind."""
    bad_apy: dict[int, str] = {}
    bad_tvl: dict[int, str] = {}
    cursor = 0
    for kinds, target in ((BAD_APY_KINDS, bad_apy), (BAD_TVL_KINDS, bad_tvl)):
        for kind in kinds:
            for row in picked[cursor : cursor + per_kind]:
                target[int(row)] = kind
            cursor += per_kind
    return bad_apy, bad_tvl


def _raw_document(
    apy_value: float, tvl_value: float, apy_problem: str | None, tvl_problem: str | None, rewarded: bool, reward: float
) -> dict:
    """One DeFiLlama JSON document, with its planted problems (None: a good value)."""
    doc: dict = {}
    if apy_problem is None:
        doc["apy"] = apy_value
    elif apy_problem != "missing":
        doc["apy"] = _BAD_APY_VALUES[apy_problem]
    if tvl_problem is None:
        doc["tvlUsd"] = tvl_value
    elif tvl_problem == "negative":
        doc["tvlUsd"] = -tvl_value
    elif tvl_problem == "nan":
        doc["tvlUsd"] = "NaN"
    if apy_problem is not None:
        doc["apyBase"], doc["apyReward"] = None, None
    elif rewarded:
        doc["apyBase"], doc["apyReward"] = round(apy_value - reward, 5), reward
    else:
        doc["apyBase"], doc["apyReward"] = apy_value, None
    return doc


def _history_rows(
    rng: np.random.Generator,
    spec: SyntheticSpec,
    pools: pd.DataFrame,
    group_idx: np.ndarray,
    apy: np.ndarray,
    tvl: np.ndarray,
    present: np.ndarray,
    midnight: tuple[int, int],
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The raw_defillama_pool_history rows, with duplicates, bad values and the near-midnight pair."""
    n = apy.shape[0]
    pool_of, day_of = np.nonzero(present)  # one entry per present pool-day, pool-major
    n_days_obs = len(pool_of)
    midnight_pool, midnight_day = midnight
    is_midnight = (pool_of == midnight_pool) & ((day_of == midnight_day) | (day_of == midnight_day + 1))

    n_extra = np.where(rng.random(n_days_obs) < DUPLICATE_RATE, rng.integers(1, 3, n_days_obs), 0)
    n_extra[is_midnight] = 0
    # The primary row (the day's value, latest of its day) lands between 01:00 and 23:59; extra rows land
    # strictly earlier so the primary is unambiguously the latest.
    primary_ms = rng.integers(3_600_000, MS_PER_DAY - 60_000, n_days_obs)
    primary_ms[is_midnight & (day_of == midnight_day)] = MS_PER_DAY - 30_000  # 23:59:30
    primary_ms[is_midnight & (day_of == midnight_day + 1)] = 30_000  # 00:00:30

    # Row layout: every present pool-day's primary row, then the extra rows.
    extra_of = np.repeat(np.arange(n_days_obs), n_extra)
    n_rows = n_days_obs + len(extra_of)
    obs = np.concatenate([np.arange(n_days_obs), extra_of])
    is_primary = np.arange(n_rows) < n_days_obs
    offset_ms = primary_ms[obs].copy()
    offset_ms[~is_primary] = (rng.random(len(extra_of)) * (primary_ms[extra_of] - 60_000)).astype(np.int64)

    apy_row = apy[pool_of[obs], day_of[obs]]
    tvl_row = tvl[pool_of[obs], day_of[obs]]
    # Intraday snapshots differ slightly from the end-of-day value.
    apy_row[~is_primary] *= np.maximum(1.0 + rng.normal(0.0, 0.02, len(extra_of)), 0.0)
    tvl_row[~is_primary] *= 1.0 + rng.normal(0.0, 0.003, len(extra_of))

    # Part of the APY is paid in reward tokens for some pools of the groups that have rewards.
    has_rewards = np.array([g.has_rewards for g in POOL_GROUPS])[group_idx] & (rng.random(n) < 0.5)
    reward_share = np.where(has_rewards, rng.uniform(0.1, 0.4, n), 0.0)[pool_of[obs]]
    rewarded = has_rewards[pool_of[obs]]

    # Bad values: distinct primary rows (the row that counts for its day), never the near-midnight pair.
    eligible = np.flatnonzero(is_primary & ~is_midnight[obs])
    picked = rng.permutation(eligible)
    per_kind = max(1, round(BAD_VALUE_RATE * n_rows))
    bad_apy, bad_tvl = _assign_bad_values(picked, per_kind)

    day_ms = np.int64(pd.Timestamp(spec.start, tz="UTC").value // 1_000_000) + day_of[obs].astype(np.int64) * MS_PER_DAY
    ts_ms = day_ms + offset_ms
    apy_list = np.round(apy_row, 5).tolist()
    tvl_list = np.round(tvl_row, 2).tolist()
    reward_list = np.round(apy_row * reward_share, 5).tolist()
    raw = [
        _raw_document(apy_list[row], tvl_list[row], bad_apy.get(row), bad_tvl.get(row), rewarded[row], reward_list[row])
        for row in range(n_rows)
    ]

    # Rows in ingestion order (time, then pool); the id column will follow it.
    order = np.lexsort((pool_of[obs], ts_ms))
    history = pd.DataFrame(
        {
            "pool_id": pools["pool_id"].to_numpy()[pool_of[obs]][order],
            "timestamp": pd.to_datetime(ts_ms[order], unit="ms", utc=True),
            "raw_json_data": [raw[i] for i in order],
        }
    )
    stats = {
        "history_rows": n_rows,
        "observed_pool_days": n_days_obs,
        "duplicate_pool_days": int((n_extra > 0).sum()),
        "extra_rows": len(extra_of),
        "near_midnight_rows": int(is_midnight.sum()),
    }
    for kind in BAD_APY_KINDS:
        stats[f"bad_apy_{kind}"] = sum(1 for k in bad_apy.values() if k == kind)
    for kind in BAD_TVL_KINDS:
        stats[f"bad_tvl_{kind}"] = sum(1 for k in bad_tvl.values() if k == kind)
    return history, stats


def _cmc_rows(
    rng: np.random.Generator, spec: SyntheticSpec, markets: dict[str, dict[str, np.ndarray]]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """raw_coinmarketcap_ohlcv rows: one per symbol and day at 23:59:59 UTC, some missing, some doubled."""
    day0_ms = pd.Timestamp(spec.start, tz="UTC").value // 1_000_000
    days = spec.days
    symbols, ts_ms, raw = [], [], []
    missing_total = duplicate_total = 0
    for symbol, series in markets.items():
        later_days = np.arange(1, days)
        missing = _choose(rng, later_days, CMC_MISSING_RATE, minimum=1)
        doubled = _choose(rng, np.setdiff1d(later_days, missing), CMC_DUPLICATE_RATE, minimum=1)
        missing_total += len(missing)
        duplicate_total += len(doubled)
        kept = np.setdiff1d(np.arange(days), missing)
        # An earlier intraday snapshot of the same day; the 23:59:59 row is the day's close.
        early_ms = rng.integers(0, MS_PER_DAY - 3_600_000, len(doubled))
        drift = 1.0 + rng.normal(0.0, 0.004, len(doubled))
        entries = [(int(d), MS_PER_DAY - 1_000, 1.0) for d in kept]
        entries += [(int(d), int(e), float(f)) for d, e, f in zip(doubled, early_ms, drift, strict=True)]
        for d, offset, scale in entries:
            close = series["close"][d] * scale
            quote = {
                "open": round(float(series["open"][d]), 4),
                "high": round(float(max(series["high"][d], close)), 4),
                "low": round(float(min(series["low"][d], close)), 4),
                "close": round(float(close), 4),
                # A snapshot has only seen the part of the day's volume traded so far.
                "volume": round(float(series["volume"][d] * (offset + 1_000) / MS_PER_DAY), 2),
            }
            symbols.append(symbol)
            ts_ms.append(day0_ms + d * MS_PER_DAY + offset)
            raw.append({"USD": quote})
    order = np.lexsort((np.array(symbols), np.array(ts_ms)))
    cmc = pd.DataFrame(
        {
            "symbol": np.array(symbols, dtype=object)[order],
            "data_timestamp": pd.to_datetime(np.array(ts_ms, dtype=np.int64)[order], unit="ms", utc=True),
            "raw_json_data": [raw[i] for i in order],
        }
    )
    return cmc, {"cmc_missing_days": missing_total, "cmc_duplicate_days": duplicate_total}


def generate(spec: SyntheticSpec) -> SyntheticData:
    """Generates the four tables' rows for ``spec`` (same spec => identical rows).

    Args:
        spec: number of pools and days, first day, seed, world.

    Returns:
        The rows, and ``stats``: ``pools``, ``history_rows``, ``observed_pool_days``, ``missing_pool_days``
        (after each pool's first day), ``pools_with_missing_run``, ``duplicate_pool_days``, ``extra_rows``,
        ``near_midnight_rows``, ``bad_apy_<missing|null|text|nan|infinity>``,
        ``bad_tvl_<missing|negative|nan>``, ``inactive_pools``, ``filtered_out_pools``, ``late_start_pools``,
        ``apy_spikes`` (on observed pool-days), ``cmc_rows``, ``cmc_missing_days``, ``cmc_duplicate_days``,
        ``gas_rows``, ``gas_missing_dates``.
    """
    rng = np.random.default_rng(spec.seed)
    n, days = spec.pools, spec.days
    pools, group_idx = _pool_table(rng, n)
    markets = _markets(rng, days)
    gas = _gas(rng, spec.start, days)
    world_stats: dict[str, int] = {}
    if spec.world == "default":  # draws in the original order: the default world is unchanged
        apy, tvl, spikes = _apy_tvl(rng, group_idx, markets["ETH"]["log_ret"], gas)
        present, start_day, with_run, midnight = _presence(rng, n, days)
    else:
        present, start_day, with_run, midnight = _presence(rng, n, days)
        if spec.world == "hard":
            apy, tvl, spikes, world_stats = _apy_tvl_hard(rng, group_idx, markets["ETH"]["log_ret"], start_day)
        else:
            apy, tvl, spikes = _apy_tvl_random_walk(rng, group_idx, days)
    history, history_stats = _history_rows(rng, spec, pools, group_idx, apy, tvl, present, midnight)
    cmc, cmc_stats = _cmc_rows(rng, spec, markets)

    gas_missing = _choose(rng, np.arange(1, days), GAS_MISSING_RATE, minimum=1)
    gas_days = np.setdiff1d(np.arange(days), gas_missing)
    gas_fees = pd.DataFrame(
        {
            "date": [spec.start + datetime.timedelta(days=int(d)) for d in gas_days],
            "actual_avg_gas_gwei": np.round(gas[gas_days], 3),
        }
    )

    in_period = np.arange(days)[None, :] >= start_day[:, None]
    stats = {
        "pools": n,
        **history_stats,
        "missing_pool_days": int((in_period & ~present).sum()),
        "pools_with_missing_run": len(with_run),
        "inactive_pools": int((~pools["is_active"]).sum()),
        "filtered_out_pools": int(pools["is_filtered_out"].sum()),
        "late_start_pools": int((start_day > 0).sum()),
        "apy_spikes": int((spikes & present).sum()),
        **world_stats,
        "cmc_rows": len(cmc),
        **cmc_stats,
        "gas_rows": len(gas_fees),
        "gas_missing_dates": len(gas_missing),
    }
    return SyntheticData(pools=pools, pool_history=history, cmc_ohlcv=cmc, gas_fees=gas_fees, stats=stats)


# allow_nan=False: a float NaN would be invalid JSON; the generator only ever plants the *string* "NaN".
# One encoder for all rows: json.dumps with options builds a new encoder per call.
_to_json = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def _timestamps(column: pd.Series) -> list[str]:
    """ISO-8601 UTC text of a tz-aware column (numpy formats it ~4x faster than ``dt.strftime``)."""
    utc = column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    return (np.datetime_as_string(utc, unit="us").astype(object) + "+00:00").tolist()


def _copy(cursor, table: str, columns: str, rows: list[tuple]) -> int:
    """COPY ``rows`` into ``table`` as CSV (an order of magnitude faster than INSERTs); returns rows copied."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)
    return cursor.rowcount


def load(engine: Engine, data: SyntheticData) -> dict[str, int]:
    """Appends ``data`` to the four upstream tables in one transaction (nothing is truncated).

    Because ``pools`` is keyed by pool_id and ``gas_fees_daily`` by date, loading the same data twice (or two
    data sets with overlapping dates) fails on a primary key, and then nothing at all is written.

    Args:
        engine: the platform database (schema already created).
        data: what :func:`generate` returned.

    Returns:
        Rows written per table name.
    """
    pools = data.pools
    pool_rows = list(
        zip(
            pools["pool_id"],
            pools["symbol"],
            pools["chain"],
            pools["project"],
            pools["pool_group"],
            ["t" if v else "f" for v in pools["is_active"]],
            ["t" if v else "f" for v in pools["is_filtered_out"]],
            strict=True,
        )
    )
    history = data.pool_history
    history_rows = list(
        zip(history["pool_id"], _timestamps(history["timestamp"]), map(_to_json, history["raw_json_data"]), strict=True)
    )
    cmc = data.cmc_ohlcv
    cmc_rows = list(
        zip(cmc["symbol"], _timestamps(cmc["data_timestamp"]), map(_to_json, cmc["raw_json_data"]), strict=True)
    )
    gas_rows = list(
        zip(
            [d.isoformat() for d in data.gas_fees["date"]],
            [repr(float(v)) for v in data.gas_fees["actual_avg_gas_gwei"]],
            strict=True,
        )
    )

    connection = engine.raw_connection()
    try:
        with connection.cursor() as cursor:
            counts = {
                "pools": _copy(
                    cursor,
                    "pools",
                    "pool_id, symbol, chain, project, pool_group, is_active, is_filtered_out",
                    pool_rows,
                ),
                "raw_defillama_pool_history": _copy(
                    cursor, "raw_defillama_pool_history", 'pool_id, "timestamp", raw_json_data', history_rows
                ),
                "raw_coinmarketcap_ohlcv": _copy(
                    cursor, "raw_coinmarketcap_ohlcv", "symbol, data_timestamp, raw_json_data", cmc_rows
                ),
                "gas_fees_daily": _copy(cursor, "gas_fees_daily", "date, actual_avg_gas_gwei", gas_rows),
            }
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.close()
    return counts
