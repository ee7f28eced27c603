"""The sidecar's own Prometheus metrics, served on ``--metrics-addr HOST:PORT`` (``/metrics``).

The consumer (``barbridge run --metrics-addr``) exposes what arrived; this exposes what the
sidecar saw on its side of the pipe: connects, disconnects by websocket close code, bars received
by source (stream, backfill, replay, synthetic), what it published and suppressed, and its
writer's backlog and delivery counters. Values are read from the live objects at every scrape
(the official ``prometheus_client`` package does the exposition format). The HTTP server is the
consumer's own, from the extension (``barbridge.MetricsServer``): the same bounds on connections,
request heads, deadlines and file descriptors, so no local client can hurt the sidecar through
this port; its counters are appended as ``barbridge_sidecar_http_*``. Label sets are bounded:
``source`` by the wire protocol's sources, ``code`` by the close codes a server sends.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

PREFIX = "barbridge_sidecar_"

#: Writer counters that only grow; every other writer stat is a gauge.
_WRITER_COUNTERS = {
    "lines_written": "Lines written into the FIFO.",
    "bars_written": "Bars written into the FIFO.",
    "dropped_overflow": "Lines dropped past the backlog bound (the sidecar backfills them).",
    "dropped_invalid": "Bars refused by the writer's validation.",
    "reader_opens": "Times a reader (the consumer) opened the FIFO.",
    "reader_lost": "Times the reader went away.",
    "pipe_full": "Writes that found the pipe full.",
    "replayed": "Lines re-sent to a new or returning consumer.",
    "hole_resends": "Lines re-sent because the consumer's ack listed them as missing.",
    "acked": "Lines the consumer acknowledged.",
    "unacked_evicted": "Unacknowledged lines forgotten past their memory bound.",
}


_CONFIRM_COUNTERS = {
    "confirm_rest_requests": "REST requests about symbols a minute closed without.",
    "confirm_rest_429": "Of those, refused with 429 (rate limit): retried later, the minutes unknown meanwhile.",
    "confirm_rest_errors": "Of those, failed otherwise: retried later.",
    "confirm_late_bars": "Bars REST had that the stream did not deliver by the deadline (sent late).",
    "confirm_quiet": "Symbol-minutes REST confirmed quiet (no bar: no trade).",
    "confirm_unknown": "Symbol-minutes given up on without an answer (never quiet).",
}


class SidecarCollector:
    """Reads the publisher, the sink and the source at every scrape."""

    def __init__(self, pub: Any, sink: Any, source: Optional[Any]) -> None:
        self.pub, self.sink, self.source = pub, sink, source

    def describe(self) -> list:
        return []  # values are read at scrape time; nothing to describe up front

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counts = dict(self.pub.counts)
        received = CounterMetricFamily(PREFIX + "bars_received", "Bars the source delivered, by source.",
                                       labels=["source"])
        for source in ("stream", "backfill", "replay", "synthetic"):
            received.add_metric([source], counts.get(f"received_{source}", 0))
        yield received
        yield CounterMetricFamily(PREFIX + "bars_published", "Bars sent to the sink.",
                                  value=counts.get("published", 0))
        yield CounterMetricFamily(PREFIX + "duplicates_suppressed",
                                  "Bars not sent because the same values were sent already.",
                                  value=counts.get("duplicates_suppressed", 0))
        yield CounterMetricFamily(PREFIX + "backfill_superseded",
                                  "Backfill bars not sent because the stream delivered a newer version.",
                                  value=counts.get("backfill_superseded", 0))
        yield GaugeMetricFamily(PREFIX + "backlog_lines", "Lines waiting for the consumer.",
                                value=self.sink.backlog())

        yield GaugeMetricFamily(PREFIX + "symbols", "Symbols subscribed now (live changes included).",
                                value=len(getattr(self.source, "symbols", None) or self.pub.symbols))

        tracker = getattr(self.source, "tracker", None)
        src_counts = getattr(self.source, "counts", {}) or {}
        yield CounterMetricFamily(PREFIX + "connects", "Websocket connections established.",
                                  value=getattr(tracker, "connects", 0))
        yield CounterMetricFamily(PREFIX + "reconnects", "Websocket connections after the first.",
                                  value=getattr(tracker, "reconnects", 0))
        yield CounterMetricFamily(PREFIX + "connect_failures", "Websocket connection attempts that failed.",
                                  value=src_counts.get("connect_failures", 0))
        yield CounterMetricFamily(PREFIX + "backfilled_bars", "Bars fetched by REST backfill.",
                                  value=src_counts.get("backfilled_bars", 0))
        disconnects = CounterMetricFamily(PREFIX + "disconnects",
                                          "Websocket disconnects, by close code (none: lost without one).",
                                          labels=["code"])
        for code, n in sorted((getattr(self.source, "close_codes", {}) or {}).items()):
            disconnects.add_metric([code], n)
        yield disconnects

        # The minute barrier (README, "Every minute accounted for").
        yield CounterMetricFamily(PREFIX + "minute_closes", "Minutes the barrier closed (minute_closed sent).",
                                  value=getattr(self.pub.native, "minutes_closed", 0))
        confirmer = getattr(self.pub, "confirmer", None)
        if confirmer is not None:
            for name, value in sorted(confirmer.stats().items()):
                if name == "confirm_pending":
                    yield GaugeMetricFamily(PREFIX + name, "Minute/symbol batches waiting for a REST answer.", value=value)
                else:
                    yield CounterMetricFamily(PREFIX + name, _CONFIRM_COUNTERS[name], value=value)

        stats = vars(self.sink.stats)
        for name, value in sorted(stats.items()):
            if name in _WRITER_COUNTERS:
                yield CounterMetricFamily(PREFIX + "writer_" + name, _WRITER_COUNTERS[name], value=value)
            elif isinstance(value, (int, float)):
                yield GaugeMetricFamily(PREFIX + "writer_" + name, f"Writer's {name.replace('_', ' ')}.", value=value)


def serve(addr: str, pub: Any, sink: Any, source: Optional[Any]) -> Any:
    """Start serving ``/metrics`` on ``addr`` (``HOST:PORT``, or ``PORT`` on 127.0.0.1) from the
    extension's server thread; returns the ``barbridge.MetricsServer`` (``.addr``, ``.stop()``).
    ValueError for a bad address, OSError when the address cannot be bound."""
    import barbridge
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(pub, sink, source))  # type: ignore[arg-type]
    return barbridge.MetricsServer(addr, lambda: generate_latest(registry).decode())
