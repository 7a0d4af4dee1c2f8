"""Place the demo's orders at a steady rate and poll them until each is terminal (or time runs out).

One asyncio loop with one pooled ``httpx.AsyncClient``: the placer sends order ``i`` at ``start + i/rate``
(each POST its own task, so a slow answer does not slow the rate), and the poller asks
``GET /orders/{id}`` only for orders still running, each at most once per ``poll_interval_s``, with at
most ``concurrency`` requests in flight. Polling ends once every placed order is terminal, or
``timeout_s`` after the last order was placed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import httpx

from choreo.cli.demo_plan import PlannedOrder
from choreo.cli.demo_report import OrderResult
from choreo.errors import InfrastructureError


def check_reachable(base_url: str, timeout_s: float = 3.0) -> None:
    """Any HTTP answer from the order API will do; no answer is one clear error."""
    try:
        httpx.get(f"{base_url}/healthz", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise InfrastructureError(
            f"order API not reachable at {base_url} ({type(exc).__name__}: {exc or 'no answer'}); "
            f"start the shop with `choreo dev` or set CHOREO_ORDER_API_URL") from None


def _time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or an offset) or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _json(answer: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} for anything else (never an exception mid-run)."""
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class DemoClient:
    """Runs one demo; ``on_placed`` / ``on_finished`` are called once per order (progress bar)."""

    def __init__(self, base_url: str, *, rate: float, timeout_s: float, poll_interval_s: float = 0.2,
                 concurrency: int = 32, on_placed: Callable[[], None] = lambda: None,
                 on_finished: Callable[[], None] = lambda: None) -> None:
        self.base_url, self.rate, self.timeout_s = base_url.rstrip("/"), rate, timeout_s
        self.poll_interval_s, self.concurrency = poll_interval_s, concurrency
        self.on_placed, self.on_finished = on_placed, on_finished
        self._slots: asyncio.Semaphore  # requests in flight, made inside the run's event loop

    def run(self, orders: Sequence[PlannedOrder]) -> list[OrderResult]:
        return asyncio.run(self._run(orders))

    async def _run(self, orders: Sequence[PlannedOrder]) -> list[OrderResult]:
        results = [OrderResult(planned) for planned in orders]
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._slots = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10.0, limits=limits) as http:
            placing = asyncio.create_task(self._place_all(http, results))
            await self._poll_until_done(http, results, placing)
        return results

    async def _place_all(self, http: httpx.AsyncClient, results: list[OrderResult]) -> None:
        start = time.monotonic()
        tasks = []
        for i, result in enumerate(results):
            delay = start + i / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._place(http, result)))
        await asyncio.gather(*tasks)

    async def _place(self, http: httpx.AsyncClient, result: OrderResult) -> None:
        async with self._slots:
            try:
                answer = await http.post("/orders", json=result.planned.body)
            except httpx.HTTPError as exc:
                result.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                order_id = _json(answer).get("order_id") if answer.status_code == 202 else None
                if order_id:
                    result.accepted_at = time.time()
                    result.order_id = str(order_id)
                elif answer.status_code == 202:
                    result.error = "HTTP 202 without an order_id"
                else:
                    result.error = f"HTTP {answer.status_code}"
        self.on_placed()

    async def _poll_until_done(self, http: httpx.AsyncClient, results: list[OrderResult],
                               placing: asyncio.Task[None]) -> None:
        deadline: float | None = None
        while True:
            if placing.done():
                placing.result()  # re-raise anything unexpected from placing
                deadline = deadline or time.monotonic() + self.timeout_s
            pending = [r for r in results if r.order_id is not None and not r.terminal]
            if placing.done() and (not pending or time.monotonic() >= (deadline or 0)):
                return
            round_started = time.monotonic()
            await asyncio.gather(*(self._poll(http, r) for r in pending))
            await asyncio.sleep(max(0.0, self.poll_interval_s - (time.monotonic() - round_started)))

    async def _poll(self, http: httpx.AsyncClient, result: OrderResult) -> None:
        async with self._slots:
            try:
                answer = await http.get(f"/orders/{result.order_id}")
            except httpx.HTTPError:
                return  # transient: asked again next round
        state = _json(answer) if answer.status_code == 200 else {}
        if not state:
            return  # 404 until the order is visible, or a bad answer: asked again next round
        result.status, result.reason = state.get("status"), state.get("reason")
        result.placed_at, result.finished_at = _time(state.get("placed_at")), _time(state.get("finished_at"))
        if result.terminal:
            result.seen_terminal_at = time.time()
            self.on_finished()
