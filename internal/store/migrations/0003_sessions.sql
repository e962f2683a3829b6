-- Conversation sessions: owner device, pinned model.
CREATE TABLE sessions (
	id           TEXT PRIMARY KEY,
	owner        TEXT NOT NULL,            -- client_id (device pubkey hex) that created it
	pinned_model TEXT NOT NULL DEFAULT '', -- '' = agent.default_model
	created_at   INTEGER NOT NULL,         -- unix milliseconds
	updated_at   INTEGER NOT NULL
);
CREATE INDEX sessions_owner ON sessions(owner);

-- History, oldest first by id: the provider-neutral messages of each turn
-- (user, assistant with its tool calls, tool results). A reply cut by an
-- interrupt keeps its partial text with interrupted = 1; the rows of a turn
-- the provider failed have failed = 1 (error holds why) and are not sent to
-- the model again.
CREATE TABLE messages (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	session_id   TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
	role         TEXT NOT NULL,             -- user, assistant, tool
	content      TEXT NOT NULL,
	tool_calls   TEXT NOT NULL DEFAULT '',  -- JSON [{id,name,arguments}] on assistant rows
	tool_call_id TEXT NOT NULL DEFAULT '',  -- on tool rows
	is_error     INTEGER NOT NULL DEFAULT 0, -- a tool row whose call failed
	attachments  TEXT NOT NULL DEFAULT '[]', -- JSON [{type,path,filename}]
	model        TEXT NOT NULL DEFAULT '',
	interrupted  INTEGER NOT NULL DEFAULT 0,
	failed       INTEGER NOT NULL DEFAULT 0,
	error        TEXT NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL
);
CREATE INDEX messages_session ON messages(session_id, id);

-- Accepted turns not yet finished: written before the client hears queued{}
-- (a turn that starts at once: 2 ms after its start, unless it has already
-- ended and its result is being stored), deleted in the same
-- transaction that stores the turn's result. After a restart every row runs
-- again, in seq (acceptance) order per run key.
CREATE TABLE turns (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	seq         INTEGER NOT NULL,
	session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
	client_id   TEXT NOT NULL,
	run_key     TEXT NOT NULL,
	text        TEXT NOT NULL,
	attachments TEXT NOT NULL DEFAULT '[]',
	created_at  INTEGER NOT NULL
);
CREATE INDEX turns_seq ON turns(seq);

-- One row per finished turn, for the usage REST.
CREATE TABLE turn_usage (
	id                INTEGER PRIMARY KEY AUTOINCREMENT,
	session_id        TEXT NOT NULL,
	client_id         TEXT NOT NULL,
	model             TEXT NOT NULL,
	prompt_tokens     INTEGER NOT NULL,
	completion_tokens INTEGER NOT NULL,
	cost_usd          REAL NOT NULL,
	status            TEXT NOT NULL, -- ok, interrupted, failed
	created_at        INTEGER NOT NULL
);
CREATE INDEX turn_usage_created ON turn_usage(created_at);

-- Frames produced for a client that had no connection open; sent, in id
-- order, when it connects or opens the session, then deleted.
CREATE TABLE outbox (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	client_id  TEXT NOT NULL,
	session_id TEXT NOT NULL,
	frame      TEXT NOT NULL, -- the encoded wire frame
	created_at INTEGER NOT NULL
);
CREATE INDEX outbox_client ON outbox(client_id, id);
