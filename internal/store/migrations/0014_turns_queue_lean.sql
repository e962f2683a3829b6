-- The turns table holds only the turns not finished yet, and is read whole
-- once, at start (ORDER BY seq, id): it needs no index on seq and no
-- AUTOINCREMENT (a row id used again after its turn ended names nothing).
-- Both cost a B-tree write on every persisted turn's insert and delete,
-- and under load every started turn is persisted. Rebuilt, since SQLite
-- cannot drop AUTOINCREMENT in place; the rows are kept.
CREATE TABLE turns_lean (
	id          INTEGER PRIMARY KEY,
	seq         INTEGER NOT NULL,
	session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
	client_id   TEXT NOT NULL,
	run_key     TEXT NOT NULL,
	text        TEXT NOT NULL,
	attachments TEXT NOT NULL DEFAULT '[]',
	created_at  INTEGER NOT NULL
);
INSERT INTO turns_lean(id, seq, session_id, client_id, run_key, text, attachments, created_at)
	SELECT id, seq, session_id, client_id, run_key, text, attachments, created_at FROM turns;
DROP TABLE turns;
ALTER TABLE turns_lean RENAME TO turns;
