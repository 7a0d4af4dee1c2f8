"""The progress service's consumer: records → facts → stored facts and derived jobs → offsets.

Group ``choreo-progress`` (its own: it takes no part in the saga and emits nothing). It reads the task
records (``choreo.tasks``), every domain topic of the catalog and the consuming services' ``<service>.dlq``
topics (for dead letters' positions; retry topics are not read: task records say everything about retries).

Delivery, at least once: a batch's facts, the jobs derived from them and the escalations they call for
commit in one store transaction, and only then are the batch's offsets stored (``enable.auto.offset.store``
off; librdkafka commits stored offsets every second; revoke and shutdown commit synchronously). A SIGKILL
redelivers what was not committed; facts are idempotent inserts, so the answer is the same. A store or
registry failure retries the same batch after a backoff, never skipping it.

Threads: :meth:`ProgressConsumer.run` owns the consumer and its store connection; :meth:`stop` may be
called from any thread; metrics are updated after each commit. Run one process per store (several
processes sharing one PostgreSQL database are correct only while a job's records reach one of them).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from choreo.config import Settings
from choreo.errors import ChoreoError
from choreo.idempotency import IdempotencyStore, open_store
from choreo.kafka.admin import TopicSpec, ensure_topics
from choreo.observability.metrics import JOB_DURATION, JOBS, JOBS_FINISHED
from choreo.progress.alerts import Alert, AlertSender, due_alerts
from choreo.progress.flow import Flow
from choreo.progress.intake import Facts, Intake
from choreo.progress.model import JOB_STATUSES, JobView, derive_job
from choreo.progress.store import SERVICE, ProgressTables, create_tables
from choreo.retry.headers import now_ms
from choreo.runtime.backoff import Backoff
from choreo.runtime.worker import consumer_config
from choreo.serde.avro import AvroEventSerde
from choreo.tasks import TASKS_TOPIC

log = logging.getLogger(__name__)

GROUP = "choreo-progress"
_TRANSIENT = (ChoreoError, KafkaException, sqlite3.Error, psycopg.Error)
_EXPIRE_EVERY_S = 3600.0


@dataclass(frozen=True)
class Change:
    old_status: str | None
    view: JobView
    finished_now: bool


class ProgressConsumer:
    """Follows the topics and keeps the ``progress_*`` tables; see the module docstring."""

    def __init__(self, flow: Flow, settings: Settings, *, base_url: str, group: str = GROUP,
                 tasks_topic: str = TASKS_TOPIC, store: IdempotencyStore | None = None, batch_size: int = 500,
                 batch_wait_s: float = 0.02, alert_grace_s: float = 5.0, alert_max_age_s: float = 3600.0,
                 clock: Callable[[], int] = now_ms) -> None:
        self.flow = flow
        self.settings = settings
        self.base_url = base_url
        self.group = group
        self.tasks_topic = tasks_topic
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self.alert_grace_s = alert_grace_s
        self.alert_max_age_s = alert_max_age_s
        self.clock = clock
        self.store = store or open_store(settings, SERVICE)
        self.ready = threading.Event()
        self.batches = 0
        self._stop = threading.Event()
        self._sent: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self.alerts = AlertSender(settings.alert_webhook_url, lambda job, cause: self._sent.put((job, cause)))
        self._deferred: dict[str, int] = {}  # job → when to look at its escalation again (epoch ms)
        self._resend: set[tuple[str, str]] = set()  # alerted but not delivered before the last stop
        self._last_expire = time.monotonic()
        create_tables(self.store)

    @property
    def topics(self) -> list[str]:
        return sorted({self.tasks_topic, *self.flow.domain_topics, *self.flow.dlq_topics})

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Consume until stopped (InfrastructureError if the broker stays unreachable at start)."""
        spec = self.settings
        ensure_topics(spec.librdkafka(), [TopicSpec(t, spec.topic_partitions, spec.topic_replication_factor)
                                          for t in self.topics])
        intake = Intake(self.flow, AvroEventSerde(SchemaRegistryClient(spec.registry_client_config()),
                                                  auto_register=False), self.tasks_topic)
        self._start_state()
        consumer = Consumer(consumer_config(spec, self.group))
        consumer.subscribe(self.topics, on_assign=lambda *_: self.ready.set(), on_revoke=self._on_revoke)
        log.info("progress consuming %s as group %s", ", ".join(self.topics), self.group)
        try:
            while not self._stop.is_set():
                # Records in error (and EOF events, were a pass-through option to enable them) carry no fact.
                messages = [m for m in consumer.consume(self.batch_size, self.batch_wait_s) if m.error() is None]
                if self._handle(intake, messages):
                    self._store_offsets(consumer, messages)
                self._maybe_expire()
        finally:
            self._commit(consumer)
            consumer.close()
            self.store.close()
            log.info("progress stopped after %d batches (%d records skipped)", self.batches, intake.skipped)

    def _start_state(self) -> None:
        with self.store.read(SERVICE) as view:
            tables = ProgressTables(view)
            counts = tables.status_counts()
            backlog = tables.alert_candidates()
            self._resend = set(tables.unsent_alerts())
        for status in JOB_STATUSES:
            JOBS.labels(SERVICE, status).set(counts.get(status, 0))
        for job in [*backlog, *(job for job, _ in self._resend)]:
            self._deferred[job] = 0

    def _handle(self, intake: Intake, messages: list[Message]) -> bool:
        """Store one batch's facts and what follows from them; False if stopped before it was stored."""
        backoff = Backoff()
        while True:
            try:
                facts = intake.facts(messages)
                now = self.clock()
                due = {job for job, at in self._deferred.items() if at <= now}
                sent = _drain(self._sent)
                if not facts and not due and not sent:
                    return True
                with self.store.transaction(SERVICE) as tx:
                    changes, alerts = self._apply(ProgressTables(tx), facts, due, sent, now)
                break
            except _TRANSIENT as exc:
                if self._stop.is_set():
                    return False
                log.error("progress batch failed, will try again: %s", exc)
                backoff.sleep()
        self.batches += 1
        for job in due:  # looked at; a job still waiting for its DLQ position was deferred again
            if self._deferred.get(job, now + 1) <= now:
                del self._deferred[job]
        self._count(changes)
        for alert in alerts:
            self.alerts.send(alert)
        return True

    def _apply(self, tables: ProgressTables, facts: Facts, due: set[str], sent: list[tuple[str, str]],
               now: int) -> tuple[list[Change], list[Alert]]:
        tables.add_events(facts.events)
        tables.add_tasks(facts.tasks)
        tables.add_dead_letters(facts.dead_letters)
        tables.mark_sent(sent)
        jobs = facts.jobs | due | {d.job_id for d in facts.dead_letters}
        old = tables.jobs(jobs)
        events, tasks = tables.facts(sorted(jobs))
        changes: list[Change] = []
        alerts: list[Alert] = []
        for job in sorted(jobs):
            if job not in events and job not in tasks:
                continue  # a dead letter of a job with no other fact (task records off): nothing to show
            view = derive_job(job, events.get(job, ()), tasks.get(job, ()), self.flow.consumers)
            body, prev = view.to_json(), old.get(job)
            finished_now = view.end_status is not None and not (prev is not None and prev.finished)
            if prev is None or prev.body != body or prev.status != view.status or finished_now:
                tables.put_job(view, body, now, finished=view.end_status is not None or bool(prev and prev.finished))
                changes.append(Change(prev.status if prev else None, view, finished_now))
            if view.dead_lettered or view.end_status == "expired":
                alerts += self._escalate(tables, view, now)
        return changes, alerts

    def _escalate(self, tables: ProgressTables, view: JobView, now: int) -> list[Alert]:
        resend = {cause for job, cause in self._resend if job == view.job_id}
        alerted = tables.alerted(view.job_id) - resend
        found, waiting = due_alerts(view, tables.dead_letters(view.job_id), alerted, self.base_url, now,
                                    self.alert_grace_s)
        if waiting:
            self._deferred[view.job_id] = now + int(self.alert_grace_s * 1000)
        send = []
        for alert in found:
            at = alert.payload.get("at_ms")
            stale = at is not None and now - at > self.alert_max_age_s * 1000
            tables.add_alert(view.job_id, alert.cause, now, sent=stale)
            self._resend.discard((view.job_id, alert.cause))
            if not stale:
                send.append(alert)
        return send

    def _count(self, changes: list[Change]) -> None:
        for change in changes:
            if change.old_status != change.view.status:
                if change.old_status is not None:
                    JOBS.labels(SERVICE, change.old_status).dec()
                JOBS.labels(SERVICE, change.view.status).inc()
            if change.finished_now:
                view = change.view
                JOBS_FINISHED.labels(SERVICE, view.end_status).inc()
                if view.end_ms is not None and view.started_ms is not None:
                    JOB_DURATION.labels(SERVICE).observe(max(0.0, (view.end_ms - view.started_ms) / 1000))

    def _store_offsets(self, consumer: Consumer, messages: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in messages:  # in offset order per partition: the last one is the highest
            last[(m.topic(), m.partition())] = m.offset()
        if last:
            try:
                consumer.store_offsets(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()])
            except KafkaException as exc:  # revoked meanwhile: the new owner re-reads, facts are idempotent
                log.warning("progress: storing offsets failed: %s", exc)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs inside consume(): every batch so far is stored with its offsets; commit them now.
        self._commit(consumer)

    def _commit(self, consumer: Consumer) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("progress: commit failed: %s", exc)

    def _maybe_expire(self) -> None:
        """Hourly: forget jobs untouched for the store's retention (their topics' records are gone too)."""
        if time.monotonic() - self._last_expire < _EXPIRE_EVERY_S:
            return
        self._last_expire = time.monotonic()
        cutoff = self.clock() - int(self.settings.store_retention.total_seconds() * 1000)
        try:
            with self.store.transaction(SERVICE) as tx:
                tables = ProgressTables(tx)
                removed = tables.expire(cutoff)
                counts = tables.status_counts()
        except _TRANSIENT as exc:
            log.warning("progress: expiring old jobs failed: %s", exc)
            return
        if removed:
            log.info("progress: forgot %d jobs older than the retention", removed)
            for status in JOB_STATUSES:
                JOBS.labels(SERVICE, status).set(counts.get(status, 0))


def _drain(q: queue.SimpleQueue[tuple[str, str]]) -> list[tuple[str, str]]:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items
