-- Chat-user pairing (internal/pairing, docs/pairing.md). A stranger who
-- writes to a bridge in a direct chat gets a code; the owner approves or
-- denies it. An approved user moves to bridge_users, which the bridge gets
-- as allowed users beside the config file's list (the seed).
CREATE TABLE pairing_requests (
	code       TEXT PRIMARY KEY, -- 8 characters, without the dash
	bridge     TEXT NOT NULL,
	user_id    TEXT NOT NULL,
	user_name  TEXT NOT NULL DEFAULT '',
	chat_id    TEXT NOT NULL,
	state      TEXT NOT NULL DEFAULT 'pending', -- pending, denied
	created_at INTEGER NOT NULL, -- unix milliseconds
	expires_at INTEGER NOT NULL
);
CREATE INDEX pairing_requests_user ON pairing_requests(bridge, user_id);

CREATE TABLE bridge_users (
	bridge      TEXT NOT NULL,
	user_id     TEXT NOT NULL,
	user_name   TEXT NOT NULL DEFAULT '',
	approved_at INTEGER NOT NULL,
	PRIMARY KEY (bridge, user_id)
);
