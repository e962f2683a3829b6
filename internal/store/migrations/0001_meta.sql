-- Key/value facts about this agent (network id, created_at, …).
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
