-- Devices of this agent's network (DESIGN.md §3). The coordinator keeps the
-- active ones in memory as well, so a revoke takes effect at once.
CREATE TABLE network_devices (
	pubkey          TEXT PRIMARY KEY,            -- Ed25519 public key, lowercase hex: the client_id
	handle          TEXT NOT NULL,
	label           TEXT NOT NULL DEFAULT '',
	capabilities    TEXT NOT NULL,               -- JSON array of strings
	status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
	created_at      INTEGER NOT NULL,            -- Unix seconds
	last_seen_at    INTEGER,                     -- Unix seconds, NULL until first stream
	cert_expires_at INTEGER NOT NULL,            -- expiry of the newest cert issued
	revoked_at      INTEGER
);
CREATE INDEX network_devices_handle ON network_devices(handle);

-- One-time invitation codes; only a SHA-256 of each code is stored.
CREATE TABLE invitations (
	code_hash  TEXT PRIMARY KEY,                 -- hex sha256 of the code
	role       TEXT NOT NULL CHECK (role IN ('chat', 'admin')),
	uses_left  INTEGER NOT NULL CHECK (uses_left >= 0),
	expires_at INTEGER NOT NULL,
	handle     TEXT NOT NULL DEFAULT '',         -- bound handle; '' lets the redeemer's device get its own
	created_at INTEGER NOT NULL
);
