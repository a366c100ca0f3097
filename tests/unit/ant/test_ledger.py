"""Flow-control bookkeeping of the Ant (ant.ledger)."""

from __future__ import annotations

import pytest

from ant.ledger import DispatchVerdict, TaskLedger

pytestmark = pytest.mark.unit


def test_free_slots_are_capacity_minus_held_tasks() -> None:
    ledger = TaskLedger(2)
    assert ledger.free_slots(accepting=True) == 2
    ledger.hold("t1", "c1", 1)
    assert ledger.free_slots(accepting=True) == 1
    assert ledger.free_slots(accepting=False) == 0
    ledger.hold("t2", "c2", 2)
    assert ledger.free_slots(accepting=True) == 0
    assert ledger.held_ids == ["t1", "t2"]


def test_decisions() -> None:
    ledger = TaskLedger(1)
    assert ledger.decide("t1", "c1", supported=True, accepting=True).verdict is DispatchVerdict.ACCEPT
    ledger.hold("t1", "c1", 1)
    full = ledger.decide("t2", "c2", supported=True, accepting=True)
    assert (full.verdict, full.reason) == (DispatchVerdict.REJECT, "no free slot")
    assert ledger.decide("t1", "c1", supported=True, accepting=True).verdict is DispatchVerdict.ACCEPT_AGAIN
    assert ledger.decide("t1", "c1", supported=True, accepting=False).verdict is DispatchVerdict.ACCEPT_AGAIN
    assert ledger.decide("t1", "c9", supported=True, accepting=True).verdict is DispatchVerdict.REPLACE
    unsupported = ledger.decide("t3", "c3", supported=False, accepting=True)
    assert unsupported.verdict is DispatchVerdict.REJECT
    assert "method" in unsupported.reason
    leaving = TaskLedger(4).decide("t4", "c4", supported=True, accepting=False)
    assert leaving.verdict is DispatchVerdict.REJECT
    assert "leaving" in leaving.reason


def test_replacing_an_attempt_keeps_one_slot() -> None:
    ledger = TaskLedger(1)
    ledger.hold("t1", "c1", 1)
    ledger.hold("t1", "c2", 2)
    assert ledger.held_ids == ["t1"]
    held = ledger.get("t1")
    assert held is not None
    assert (held.correlation_id, held.dispatch_sequence) == ("c2", 2)


def test_last_acked_sequence_only_grows() -> None:
    ledger = TaskLedger(1)
    ledger.answered(3)
    ledger.answered(2)
    assert ledger.last_acked_sequence == 3


def test_a_result_holds_its_slot_until_acknowledged() -> None:
    ledger = TaskLedger(1)
    ledger.hold("t1", "c1", 1)
    sequence = ledger.record_result("t1")
    assert ledger.record_result("t1") == sequence  # kept when asked again (a re-send)
    assert ledger.free_slots(accepting=True) == 0
    assert ledger.acknowledge(sequence + 100) is None
    assert ledger.acknowledge(sequence) == "t1"
    assert ledger.free_slots(accepting=True) == 1
    assert ledger.acknowledge(sequence) is None


def test_result_sequences_are_unique_per_process() -> None:
    ledger = TaskLedger(3)
    for task in ("a", "b", "c"):
        ledger.hold(task, "c", 1)
    sequences = [ledger.record_result(t) for t in ("a", "b", "c")]
    assert sequences == [1, 2, 3]
    ledger.acknowledge(2)
    ledger.hold("d", "c", 2)
    assert ledger.record_result("d") == 4


def test_a_new_session_forgets_everything() -> None:
    ledger = TaskLedger(2)
    ledger.hold("t1", "c1", 1)
    ledger.hold("t2", "c2", 2)
    ledger.record_result("t2")
    ledger.answered(2)
    assert ledger.new_session() == ["t1", "t2"]
    assert ledger.held_ids == []
    assert ledger.last_acked_sequence == 0


def test_a_resume_keeps_only_the_reattached_tasks() -> None:
    ledger = TaskLedger(3)
    for n in (1, 2, 3):
        ledger.hold(f"t{n}", "c", n)
    ledger.answered(3)
    assert ledger.keep_only(["t2"]) == ["t1", "t3"]
    assert ledger.held_ids == ["t2"]
    assert ledger.last_acked_sequence == 3


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        TaskLedger(0)
