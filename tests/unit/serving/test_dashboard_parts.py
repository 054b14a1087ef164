"""The dashboard's pure parts: chart helpers (bins, ticks, labels, SVG), latency quantiles from histogram
buckets, live figures from a real Prometheus registry, and session cookies / CSRF tokens."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from fastapi import Request, Response

from recstack.serving.dashboard import charts
from recstack.serving.dashboard.access import COOKIE, Sessions
from recstack.serving.dashboard.live import LiveFigures, quantile, read
from recstack.serving.metrics import Metrics

SVG = "{http://www.w3.org/2000/svg}"


def test_log_bins_count_powers_of_two_from_the_first_non_empty_bin() -> None:
    # 5, 6, 7 → [4, 7]; 8 → [8, 15]; 40 → [32, 63]; nothing in [1], [2, 3], [16, 31]
    assert charts.log_bins([5, 6, 7, 8, 40]) == (["4", "8", "16", "32"], [3, 1, 0, 1])
    assert charts.log_bins([1, 1, 3]) == (["1", "2"], [2, 1])
    assert charts.log_bins([]) == ([], [])


def test_compact_labels_and_ticks_cover_the_data() -> None:
    assert [charts.compact(v) for v in (0, 0.05, 12, 1234, 2_500_000)] == ["0", "0.05", "12", "1.23k", "2.5M"]
    assert charts._linear_ticks(0, 0.94) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert charts._linear_ticks(0, 10_000) == [0, 2000, 4000, 6000, 8000, 10_000]


def test_rank_points_keep_both_ends_and_thin_the_middle() -> None:
    counts = list(range(5000, 0, -1))
    points = charts.rank_points(counts, most=100)
    assert points[0] == (1, 5000) and points[-1] == (5000, 1)
    assert len(points) <= 101 and [r for r, _ in points] == sorted({r for r, _ in points})
    assert charts.rank_points([3, 2]) == [(1, 3), (2, 2)]


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_every_chart_is_valid_svg_with_a_title_axis_labels_and_no_style() -> None:
    made = [
        charts.line_chart({"view": [(0, 1), (3 * 86_400_000, 5)], "like": [(0, 2), (3 * 86_400_000, 0)]},
                          title="Events", x_label="time (UTC)", y_label="events per day", time_x=True),
        charts.line_chart({"items": [(1, 500), (2, 50), (3, 1)]}, title="Tail", x_label="rank",
                          y_label="events (log scale)", log_y=True),
        charts.column_chart(["1", "2", "4"], [3, 0, 7], title="Activity", x_label="events per user", y_label="users"),
        charts.bar_chart(["ndcg@10", "recall@10"], {"v1": [0.1, 0.2], "v2": [0.3, math.nan]}, title="Metrics",
                         value_label="metric value"),
    ]
    for svg in made:
        root = ET.fromstring(svg)
        assert root.get("viewBox") is not None and root.find(f"{SVG}title") is not None
        assert "style=" not in svg and "<script" not in svg
    assert {"Events", "time (UTC)", "events per day", "view", "like", "1970-01-01"} <= set(_texts(made[0]))
    assert {"1", "10", "100", "1k"} <= set(_texts(made[1]))
    assert {"users", "events per user", "7", "3"} <= set(_texts(made[2]))
    assert {"metric value", "ndcg@10", "v1", "v2", "0.3", "0"} <= set(_texts(made[3]))
    assert "no data yet" in _texts(charts.line_chart({}, title="Empty", x_label="x", y_label="y"))


def test_chart_text_is_escaped() -> None:
    svg = charts.bar_chart(["<b>&"], {"a": [1.0]}, title="<script>", value_label="v")
    assert "<script>" not in svg and "&lt;b&gt;&amp;" in svg
    ET.fromstring(svg)


def test_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    # 10 observations ≤ 0.01 s, 10 more in (0.01, 0.05]: the median is the 0.01 bound, p75 halfway to 0.05.
    buckets = {0.01: 10.0, 0.05: 20.0, math.inf: 20.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.01)
    assert quantile(buckets, 0.75) == pytest.approx(0.03)
    assert quantile({0.01: 0.0, math.inf: 0.0}, 0.5) is None
    assert quantile({0.01: 0.0, math.inf: 4.0}, 0.99) == 0.01


def test_live_figures_count_api_routes_only() -> None:
    metrics = Metrics()
    for status, seconds in (("200", 0.004), ("200", 0.004), ("503", 0.2)):
        metrics.requests.labels("/v1/users/{user_id}/recommendations", "GET", status).inc()
        metrics.latency.labels("/v1/users/{user_id}/recommendations", "GET", status).observe(seconds)
    metrics.requests.labels("/dashboard", "GET", "200").inc(50)
    metrics.cache.labels("hit").inc(3)
    metrics.cache.labels("miss").inc(1)
    reading = read(metrics.registry)
    assert (reading.requests, reading.errors, reading.cache_hits, reading.cache_misses) == (3, 1, 3, 1)
    figures = LiveFigures(metrics.registry, started=reading.at - 10).figures()
    assert figures["requests_total"] == 3 and figures["errors_total"] == 1
    assert figures["cache_hit_rate"] == 0.75
    assert 2 <= figures["p50_ms"] <= 5 and 100 <= figures["p99_ms"] <= 250
    assert 0.2 <= figures["requests_per_s"] <= 0.31


def test_session_cookies_are_encrypted_signed_and_bound_to_their_secret() -> None:
    sessions = Sessions("s3cret")
    response = Response()
    sessions.issue(response, "rk_abc_secret-key", secure=False)
    header = response.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=") and "rk_abc" not in header
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/dashboard" in header
    value = header.split(";")[0].split("=", 1)[1]

    def carrying(cookie: str) -> Request:
        return Request({"type": "http", "headers": [(b"cookie", f"{COOKIE}={cookie}".encode())]})

    token, csrf = sessions._read(carrying(value)) or ("", "")
    assert token == "rk_abc_secret-key" and len(csrf) >= 32
    assert Sessions("other")._read(carrying(value)) is None
    assert sessions._read(carrying(value[:-6] + "AAAAAA")) is None
    assert sessions.open_csrf("login") == Sessions("s3cret").open_csrf("login") != sessions.open_csrf()
