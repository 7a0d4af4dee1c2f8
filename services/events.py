"""Typed events of the reference choreography, one class per ``schemas/<topic>/<Name>.avsc``.

The ``.avsc`` files are the source of truth; ``tests/unit/test_reference_events.py`` proves these
classes match them field for field (a drifted class also fails when a service starts).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from choreo import Event, JobEnd

NS = "io.choreo.shop"


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True)
    sku: str
    quantity: int = Field(ge=1)
    unit_price_minor: int = Field(ge=0)


class ReservedLine(BaseModel):
    model_config = ConfigDict(frozen=True)
    sku: str
    quantity: int = Field(ge=1)


class AuthorizedLine(BaseModel):
    """A quantity of one SKU a payment authorization covers (inventory reserves from these)."""

    model_config = ConfigDict(frozen=True)
    sku: str
    quantity: int = Field(ge=1)


# -- orders ------------------------------------------------------------------------------------
class OrderPlaced(Event, schema=f"{NS}.OrderPlaced", key="order_id", job_deadline="deadline"):
    order_id: str
    customer_id: str
    lines: list[OrderLine] = Field(min_length=1)
    total_minor: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)
    placed_at: datetime
    deadline: datetime | None = None  # placed_at + the job's max TTL; None from older producers


class OrderCancelled(Event, schema=f"{NS}.OrderCancelled", key="order_id",
                     ends_job=JobEnd("cancelled", reason_field="reason")):
    order_id: str
    reason: str
    cancelled_at: datetime


class OrderCompleted(Event, schema=f"{NS}.OrderCompleted", key="order_id", ends_job=JobEnd("completed")):
    order_id: str
    shipment_id: str
    completed_at: datetime


class OrderExpired(Event, schema=f"{NS}.OrderExpired", key="order_id",
                   ends_job=JobEnd("expired", reason="expired")):
    order_id: str
    deadline: datetime
    expired_at: datetime


# -- payments ----------------------------------------------------------------------------------
class PaymentAuthorized(Event, schema=f"{NS}.PaymentAuthorized", key="order_id"):
    order_id: str
    payment_id: str
    amount_minor: int = Field(ge=0)
    currency: str
    authorized_at: datetime
    lines: list[AuthorizedLine] = Field(default_factory=list)  # copied from OrderPlaced
    deadline: datetime | None = None


class PaymentDeclined(Event, schema=f"{NS}.PaymentDeclined", key="order_id"):
    order_id: str
    reason: str
    decline_code: str | None = None
    declined_at: datetime


class PaymentRefunded(Event, schema=f"{NS}.PaymentRefunded", key="order_id"):
    order_id: str
    payment_id: str
    amount_minor: int = Field(ge=0)
    currency: str
    reason: str
    refunded_at: datetime


# -- fraud -------------------------------------------------------------------------------------
class FraudCheckPassed(Event, schema=f"{NS}.FraudCheckPassed", key="order_id"):
    order_id: str
    score: float
    deadline: datetime | None = None


class FraudCheckFailed(Event, schema=f"{NS}.FraudCheckFailed", key="order_id"):
    order_id: str
    score: float
    reason: str


# -- inventory ---------------------------------------------------------------------------------
class StockReserved(Event, schema=f"{NS}.StockReserved", key="order_id"):
    order_id: str
    reservation_id: str
    lines: list[ReservedLine]
    deadline: datetime | None = None


class StockUnavailable(Event, schema=f"{NS}.StockUnavailable", key="order_id"):
    order_id: str
    sku: str
    requested: int
    available: int


class StockReleased(Event, schema=f"{NS}.StockReleased", key="order_id"):
    order_id: str
    reservation_id: str
    reason: str


# -- shipping ----------------------------------------------------------------------------------
class ShipmentDispatched(Event, schema=f"{NS}.ShipmentDispatched", key="order_id"):
    order_id: str
    shipment_id: str
    carrier: str
    tracking_number: str
    estimated_delivery_at: datetime | None = None


class ShipmentFailed(Event, schema=f"{NS}.ShipmentFailed", key="order_id"):
    order_id: str
    reason: str


# -- notifications -----------------------------------------------------------------------------
class CustomerNotified(Event, schema=f"{NS}.CustomerNotified", key="order_id"):
    order_id: str
    channel: str
    template: str
    outcome: str
    notified_at: datetime


ALL_EVENTS: tuple[type[Event], ...] = (
    OrderPlaced, OrderCancelled, OrderCompleted, OrderExpired, PaymentAuthorized, PaymentDeclined,
    PaymentRefunded, FraudCheckPassed, FraudCheckFailed, StockReserved, StockUnavailable, StockReleased,
    ShipmentDispatched, ShipmentFailed, CustomerNotified,
)
