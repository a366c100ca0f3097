"""PostgreSQL: `formicary_guard(matched, what)`, the server-side half of a deferred guarded statement.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

A transaction whose statements all wait for its end (`queen/store/_fast.py`) sends them and its COMMIT
in one pipeline when each guard fails on the server: a guarded statement that matches no row raises
through this function (SQLSTATE FG001, the message naming the statement), the COMMIT after it does
not run, and the store explains the failure once the transaction is rolled back. SQLite has no such
pipeline and checks its guards in Python: nothing to create there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION formicary_guard(matched bigint, what text) RETURNS bigint
        LANGUAGE plpgsql AS $$
        BEGIN
            IF matched = 0 THEN
                RAISE EXCEPTION USING ERRCODE = 'FG001', MESSAGE = what;
            END IF;
            RETURN matched;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS formicary_guard(bigint, text)")
