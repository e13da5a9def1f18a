-- runbook: no-transaction
-- CONCURRENTLY keeps items writable during the build, and cannot run inside a
-- transaction. A failed build leaves an invalid index behind, which IF NOT
-- EXISTS would then skip: the verify script catches that case.

CREATE INDEX CONCURRENTLY IF NOT EXISTS items_owner_idx ON items (owner);
