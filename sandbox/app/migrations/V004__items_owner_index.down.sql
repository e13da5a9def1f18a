-- runbook: no-transaction

DROP INDEX CONCURRENTLY IF EXISTS items_owner_idx;
