-- runbook: allow-destructive

ALTER TABLE items DROP COLUMN slug;
