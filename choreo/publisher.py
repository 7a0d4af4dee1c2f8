"""Publishing events from outside a handler: the start of a job (an API call placing an order, a script).

Events emitted by handlers never go through here: the runtime publishes them with derived ids.
A publish is confirmed only by :meth:`Publisher.flush` (or ``publish(..., wait=True)``): nothing is
reported sent that the broker did not acknowledge.

    with Publisher.from_settings(settings) as publisher:
        envelope = publisher.publish(OrderPlaced(order_id="o-1", ...))
        print(envelope.correlation_id)   # the job id
"""

from __future__ import annotations

from types import TracebackType

from confluent_kafka.schema_registry import SchemaRegistryClient

from choreo.config import Settings
from choreo.envelope import Envelope, root_envelope
from choreo.events import Event, EventBinding, bind
from choreo.kafka.producer import OutgoingRecord, ReliableProducer
from choreo.schemas.catalog import SchemaCatalog
from choreo.serde.avro import AvroEventSerde


class Publisher:
    """Encode typed events and produce them keyed by entity id. One thread at a time."""

    def __init__(self, catalog: SchemaCatalog, producer: ReliableProducer, serde: AvroEventSerde,
                 source: str = "choreo") -> None:
        self.catalog = catalog
        self.producer = producer
        self.serde = serde
        self.source = source
        self._bindings: dict[type[Event], EventBinding] = {}

    @classmethod
    def from_settings(cls, settings: Settings, source: str = "choreo", **producer_config: object) -> Publisher:
        catalog = SchemaCatalog.load(settings.schemas_dir)
        producer = ReliableProducer(settings.librdkafka(**producer_config))
        serde = AvroEventSerde(SchemaRegistryClient(settings.registry_client_config()))
        return cls(catalog, producer, serde, source)

    def binding(self, event_class: type[Event]) -> EventBinding:
        binding = self._bindings.get(event_class)
        if binding is None:
            binding = self._bindings[event_class] = bind(event_class, self.catalog)
        return binding

    def publish(self, event: Event, *, correlation_id: str | None = None, wait: bool = False) -> Envelope:
        """Queue ``event`` as the root of a job (or of ``correlation_id``'s job); return its envelope.

        Raises EventValidationError before sending if the payload does not fit its schema.
        """
        binding = self.binding(type(event))
        envelope = root_envelope(binding.type_name, self.source, event.entity_key(), correlation_id=correlation_id)
        value = self.serde.encode(binding, event)
        self.producer.produce(OutgoingRecord(binding.topic, event.entity_key().encode(), value, envelope.to_headers()))
        if wait:
            self.flush()
        return envelope

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every published event is acknowledged; ProduceError otherwise."""
        self.producer.flush(timeout_s)

    def close(self) -> None:
        self.producer.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.flush()
        self.close()
