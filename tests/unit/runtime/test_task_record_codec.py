"""The task record wire format: the hand-formatted encoder is read back by json.loads, quotes included."""

from __future__ import annotations

import json

import pytest

from choreo.tasks import TaskRecord, TaskRecordError, decode_task, encode_task


def test_a_record_round_trips_and_is_plain_json() -> None:
    value = encode_task('job-"1"\\', "task-1", "payment", "retrying", 2, "in-é", "io.x.OrderPlaced", 10, 12)
    assert json.loads(value)["job"] == 'job-"1"\\'
    assert decode_task(value) == TaskRecord(job='job-"1"\\', task="task-1", service="payment", status="retrying",
                                            attempt=2, input="in-é", type="io.x.OrderPlaced", started=10, stopped=12)


@pytest.mark.parametrize("value", [b"", b"not json", b"[]", b'{"v": 2}',
                                   b'{"v":1,"status":"exploded"}', b'{"v":1,"status":"completed"}'])
def test_anything_else_is_refused_with_a_typed_error(value: bytes) -> None:
    with pytest.raises(TaskRecordError):
        decode_task(value)
