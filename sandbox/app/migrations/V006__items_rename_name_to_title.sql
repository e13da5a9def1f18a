-- runbook: breaks-previous
-- Contract step: v1.2.2 (APP_SCHEMA=1) queries items.name and fails with
-- SQLSTATE 42703 after this, while v1.2.3 detects title and keeps working.

ALTER TABLE items RENAME COLUMN name TO title;
