"""The batch jobs' set-level rules, written once as SQL that both engines run.

DuckDB executes these statements for the embedded engine and Spark SQL for the distributed one, so the
de-duplication rule, the per-pair training strengths, the daily aggregates and the user and item features
cannot drift apart between engines. The statements stay inside the dialect the two share (no QUALIFY, no
engine-specific date functions: event dates arrive as a `date` column computed by the shared Python step).

Views the statements read:
- `validated`: accepted interaction rows (`event_id`, `user_id`, `item_id`, `event_type`, `value`,
  `timestamp` in epoch ms);
- `events`: the de-duplicated rows with `date` (YYYY-MM-DD, UTC) and `weight` (the row's strength);
- `catalog`: `item_id`, `category`, `duration_s`, `created_at` (epoch ms) of the items, possibly empty.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AGGREGATES",
    "DAY_MS",
    "DEDUPLICATE",
    "FEATURES",
    "WINDOW_DAYS",
    "aggregate_sql",
    "feature_sql",
    "total",
]

DAY_MS: Final = 86_400_000
WINDOW_DAYS: Final = (1, 7, 30)

# The first copy of an event id wins: the earliest, then the smallest by every other column, so the choice
# does not depend on the order rows arrive in (which no distributed engine keeps).
DEDUPLICATE: Final = """
SELECT event_id, user_id, item_id, event_type, value, timestamp FROM (
  SELECT event_id, user_id, item_id, event_type, value, timestamp,
         ROW_NUMBER() OVER (
           PARTITION BY event_id ORDER BY timestamp, user_id, item_id, event_type, value NULLS LAST
         ) AS copy_number
  FROM validated
) AS numbered
WHERE copy_number = 1
"""


# Strengths are summed as integers of 2**-32: a float sum depends on the order of its terms, which differs
# between engines and partitionings, while an integer sum does not. Each term moves by at most 1.2e-10.
WEIGHT_UNIT: Final = 4_294_967_296


def total(column: str = "weight") -> str:
    """An order-independent SUM of a strength column: the same bits on every engine and partitioning."""
    return f"CAST(SUM(CAST(ROUND({column} * {WEIGHT_UNIT}) AS BIGINT)) AS DOUBLE) / {WEIGHT_UNIT}"


def _windows(reference_ms: int, prefix: str = "events") -> str:
    return ",\n  ".join(
        f"COUNT(CASE WHEN timestamp > {reference_ms - days * DAY_MS} THEN 1 END) AS {prefix}_{days}d"
        for days in WINDOW_DAYS
    )


def _pair_weight(max_weight: float | None) -> str:
    return total() if max_weight is None else f"LEAST({total()}, CAST({max_weight!r} AS DOUBLE))"


def aggregate_sql(reference_ms: int, max_weight: float | None = None) -> dict[str, str]:
    """The ETL's outputs besides the events themselves, by name.

    - `pairs`: one row per (user, item): the summed strength (capped at `max_weight`, as `weigh` does), the
      number of events and the first and last event time — what a model's training matrix is built from.
    - `daily_items` / `daily_users`: per date and item (user): events, distinct users (items), summed strength.
    - `trending`: per item, events in the last 1, 7 and 30 days before `reference_ms` (epoch ms) and in all.
    """
    return {
        "pairs": f"""
SELECT user_id, item_id, {_pair_weight(max_weight)} AS weight, COUNT(*) AS events,
       MIN(timestamp) AS first_ts, MAX(timestamp) AS last_ts
FROM events GROUP BY user_id, item_id""",
        "daily_items": f"""
SELECT date, item_id, COUNT(*) AS events, COUNT(DISTINCT user_id) AS users, {total()} AS weight
FROM events GROUP BY date, item_id""",
        "daily_users": f"""
SELECT date, user_id, COUNT(*) AS events, COUNT(DISTINCT item_id) AS items, {total()} AS weight
FROM events GROUP BY date, user_id""",
        "trending": f"""
SELECT item_id,
  {_windows(reference_ms)},
  COUNT(*) AS events_all
FROM events GROUP BY item_id""",
    }


AGGREGATES: Final = ("pairs", "daily_items", "daily_users", "trending")


def feature_sql(reference_ms: int) -> dict[str, str]:
    """Per-user and per-item features for ranking and analysis, as of `reference_ms` (epoch ms).

    - `user_features`: events, distinct items, active days, first/last event, days since the last event,
      summed strength, share of events with positive strength, and events in the recent windows.
    - `item_features`: events, distinct users, summed strength, first/last event, events in the recent
      windows, the catalogue's category and duration, and the age in days (from the catalogue's creation
      time when known, else from the first event).
    """
    return {
        "user_features": f"""
SELECT user_id, COUNT(*) AS events, COUNT(DISTINCT item_id) AS items, COUNT(DISTINCT date) AS active_days,
  MIN(timestamp) AS first_ts, MAX(timestamp) AS last_ts,
  CAST({reference_ms} - MAX(timestamp) AS DOUBLE) / {DAY_MS} AS recency_days,
  {total()} AS weight,
  CAST(COUNT(CASE WHEN weight > 0 THEN 1 END) AS DOUBLE) / COUNT(*) AS positive_share,
  {_windows(reference_ms)}
FROM events GROUP BY user_id""",
        "item_features": f"""
SELECT e.item_id, e.events, e.users, e.weight, e.first_ts, e.last_ts, e.events_1d, e.events_7d, e.events_30d,
  c.category, CAST(c.duration_s AS DOUBLE) AS duration_s,
  CAST({reference_ms} - COALESCE(c.created_at, e.first_ts) AS DOUBLE) / {DAY_MS} AS age_days
FROM (
  SELECT item_id, COUNT(*) AS events, COUNT(DISTINCT user_id) AS users, {total()} AS weight,
    MIN(timestamp) AS first_ts, MAX(timestamp) AS last_ts,
    {_windows(reference_ms)}
  FROM events GROUP BY item_id
) AS e LEFT JOIN catalog AS c ON e.item_id = c.item_id""",
    }


FEATURES: Final = ("user_features", "item_features")
