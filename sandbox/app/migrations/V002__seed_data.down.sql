-- runbook: allow-destructive
-- Removes the seeded rows only: items created through the API stay.
-- Deleting the users also deletes their sessions (ON DELETE CASCADE).

DELETE FROM items
WHERE name IN (SELECT 'item ' || g FROM generate_series(1, 500) AS g);

DELETE FROM users WHERE username IN ('demo', 'alice', 'bob');
