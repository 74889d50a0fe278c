-- 007_users: dashboard sign-in (control/auth.c, docs/dashboard.md). Passwords are kept as
-- libsodium crypto_pwhash strings (argon2id, parameters inside the string), never in clear.
-- Sessions live in vacsd's memory (a restart signs everyone out).
CREATE TABLE users (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	email         text NOT NULL,
	password_hash text NOT NULL,
	role          text NOT NULL CHECK (role IN ('viewer', 'admin')),
	created_at    timestamptz NOT NULL DEFAULT now(),
	disabled_at   timestamptz,
	last_login_at timestamptz
);
CREATE UNIQUE INDEX users_email ON users (lower(email));
