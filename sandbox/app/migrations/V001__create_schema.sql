-- Base schema of the demo app, shipped with v1.2.2.
-- sessions references users by name so the login code needs no id lookup.

CREATE TABLE users (
    id serial PRIMARY KEY,
    username text UNIQUE NOT NULL,
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    token text PRIMARY KEY,
    username text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE items (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    owner text NOT NULL DEFAULT 'demo',
    created_at timestamptz NOT NULL DEFAULT now()
);
