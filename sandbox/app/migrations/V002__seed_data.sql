-- Demo users and 500 items.
-- Passwords are <username>-password, hashed as pbkdf2_sha256 with 100000
-- iterations and a fixed salt per user so the file is reproducible.
-- mod() instead of the percent operator: a driver that formats parameters
-- into the script would treat a bare percent sign as a placeholder.

INSERT INTO users (username, password_hash) VALUES
    ('demo', 'pbkdf2_sha256$100000$64656d6f2d73616c742d303030303031$0a15b64bcc8b677150096c43016dd1a9a94902f38a5f42879d9476c224c936d5'),
    ('alice', 'pbkdf2_sha256$100000$616c6963652d73616c742d3030303031$725d3b3729d508c092b06a320ec2872855261e533ce6dcf4e30cb846bf34d975'),
    ('bob', 'pbkdf2_sha256$100000$626f622d73616c742d30303030303031$0a6de53cbc66efbf508d56914f3fef9daa147ce3d57fe694fb19d20cc8f699c2');

INSERT INTO items (name, owner)
SELECT 'item ' || g, (ARRAY['demo', 'alice', 'bob'])[1 + mod(g, 3)]
FROM generate_series(1, 500) AS g;
