-- runbook: allow-destructive
-- Drops every table of the demo app with its data. sessions first: it references users.

DROP TABLE sessions;

DROP TABLE items;

DROP TABLE users;
