"""Approval gates around the store: opening them, timers of their SLA ladders, notifications, the ledger.

The rules are pure (`queen.domain.approvals`); the decisions people make go through
`queen.services.approvals.ApprovalService`. The engine's hooks, each used inside the caller's
transaction: `gates.open_gate` (a MANUAL task starts waiting), `gates.invalidate` (an upstream task ran
again while a gate waits), `gates.cancel_gates` (the job is cancelled at its gate).
"""
