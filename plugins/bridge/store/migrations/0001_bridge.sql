-- A bridge's own state (plugins/bridge/store), in <DataDir>/bridge.db.

-- Platform messages already handed to the agent: a redelivered one is
-- skipped. Bounded per chat (store.DedupWindow newest, by seq).
CREATE TABLE handled (
	chat_id TEXT NOT NULL,
	msg_id  TEXT NOT NULL,
	seq     INTEGER NOT NULL,
	PRIMARY KEY (chat_id, msg_id)
);
CREATE INDEX handled_seq ON handled(chat_id, seq);

-- Chats moved to another session with /new.
CREATE TABLE chat_sessions (
	chat_id    TEXT PRIMARY KEY,
	session_id TEXT NOT NULL,
	updated_at INTEGER NOT NULL -- unix milliseconds
);

-- The send queue: final replies the gateway handed over, until the
-- platform accepted every part and the gateway has the ack; then kept as
-- done for a while, so a reply the gateway sends again is recognised.
CREATE TABLE replies (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	session_id  TEXT NOT NULL,
	turn_id     TEXT NOT NULL,
	chat_id     TEXT NOT NULL,
	text        TEXT NOT NULL,
	attachments TEXT NOT NULL DEFAULT '[]', -- JSON [{type,path,filename}]
	files_sent  INTEGER NOT NULL DEFAULT 0, -- attachments already posted
	complete    INTEGER NOT NULL DEFAULT 0, -- turn_complete seen
	state       TEXT NOT NULL,              -- sending, acking, done
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL,
	UNIQUE (session_id, turn_id)
);
CREATE INDEX replies_state ON replies(state, id);

-- Platform messages that show a reply, one per part.
CREATE TABLE reply_parts (
	reply_id INTEGER NOT NULL REFERENCES replies(id) ON DELETE CASCADE,
	part     INTEGER NOT NULL,
	msg_id   TEXT NOT NULL,
	shown    TEXT NOT NULL, -- what the message shows now
	PRIMARY KEY (reply_id, part)
);

-- Platform messages of the reply a session is streaming (before its final
-- response arrived); the response adopts them.
CREATE TABLE stream_parts (
	session_id TEXT NOT NULL,
	part       INTEGER NOT NULL,
	chat_id    TEXT NOT NULL,
	msg_id     TEXT NOT NULL,
	shown      TEXT NOT NULL,
	PRIMARY KEY (session_id, part)
);

-- Free-form values for platforms (cursors, pairing state, …).
CREATE TABLE kv (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
