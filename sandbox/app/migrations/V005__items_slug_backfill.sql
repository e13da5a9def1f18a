-- Expand step: the column stays nullable because v1.2.2 keeps inserting rows
-- without a slug while both versions run. v1.2.3 fills it on insert with the
-- same expression. A single UPDATE is fine for 500 rows, a large table would
-- be backfilled in batches outside one transaction.

ALTER TABLE items ADD COLUMN slug text;

UPDATE items SET slug = regexp_replace(lower(name), '[^a-z0-9]+', '-', 'g') WHERE slug IS NULL;
