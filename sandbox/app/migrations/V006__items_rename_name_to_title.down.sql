-- runbook: allow-destructive

ALTER TABLE items RENAME COLUMN title TO name;
