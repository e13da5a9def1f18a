-- A constant default makes this a metadata-only change: no table rewrite.

ALTER TABLE items ADD COLUMN status text NOT NULL DEFAULT 'active';
