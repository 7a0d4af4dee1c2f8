"""Prometheus metrics (SPEC §6). Names start with ``choreo_`` and carry ``service`` (+ topic, event_type).

The runtime counts per batch where it can (``inc(n)``), so metrics cost little on the hot path.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from choreo.observability.histogram import BatchedHistogram

CONSUMED = Counter("choreo_events_consumed", "Records consumed", ["service", "topic", "event_type"])
PRODUCED = Counter("choreo_events_produced", "Events produced and acknowledged", ["service", "topic", "event_type"])
HANDLER_DURATION = BatchedHistogram(  # observed per handler run, merged per batch
    "choreo_handler_duration_seconds", "Handler run time", ["service", "event_type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HANDLER_ERRORS = Counter("choreo_handler_errors", "Handler failures by error type",
                         ["service", "event_type", "error_type"])
RETRIES = Counter("choreo_retries", "Events sent to a retry topic", ["service", "topic", "attempt"])
DEAD_LETTERED = Counter("choreo_dead_lettered", "Events sent to the dead-letter topic",
                        ["service", "topic", "reason"])
DUPLICATES = Counter("choreo_duplicates_skipped", "Events skipped as already processed", ["service", "event_type"])
SKIPPED_POISON = Counter("choreo_poison_records", "Records that could not be decoded", ["service", "topic"])
TIMERS_FIRED = Counter("choreo_timers_fired", "Durable timers fired (their records handed to the stages)", ["service"])
JOIN_LATE_PARTS = Counter("choreo_join_late_parts", "Join parts that arrived after their join completed or timed out",
                          ["service", "join"])
JOIN_DUPLICATE_PARTS = Counter("choreo_join_duplicate_parts",
                               "Join parts whose type had already arrived for the key (the first copy counts)",
                               ["service", "join"])
JOINS_CLOSED = Counter("choreo_joins_closed", "Joins closed, by outcome (completed, timed-out)",
                       ["service", "join", "outcome"])

# The progress service (``choreo progress``, label service="progress"): jobs by derived status, jobs that
# reached a terminal event (counted once per job, by the terminal event's status), and start → terminal time.
JOBS = Gauge("choreo_jobs", "Jobs known to the progress service, by status", ["service", "status"])
JOBS_FINISHED = Counter("choreo_jobs_finished", "Jobs that reached their terminal event, by its status",
                        ["service", "status"])
JOB_DURATION = Histogram(
    "choreo_job_duration_seconds", "Job duration, root event to terminal event", ["service"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 86400),
)
