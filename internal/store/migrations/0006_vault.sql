-- The vault index (internal/vault): derived from the notes in memories/,
-- rebuilt incrementally from mtime+size+hash at start and kept current by
-- the watcher. Losing it loses nothing: the files are the truth.
CREATE TABLE vault_notes (
	id       INTEGER PRIMARY KEY,
	path     TEXT NOT NULL UNIQUE,     -- relative to memories/, slash-separated, ends in .md
	title    TEXT NOT NULL,
	type     TEXT NOT NULL DEFAULT '',
	tags     TEXT NOT NULL DEFAULT '[]', -- JSON array, lower-case
	mtime_ns INTEGER NOT NULL,
	size     INTEGER NOT NULL,
	hash     TEXT NOT NULL              -- hex sha256 of the file: the note's version
);

-- Links as written; resolution happens at read time (a new note can change
-- what a bare [[name]] points to). target_base is the lower-case last path
-- element of the target without .md: the key backlinks are looked up by.
CREATE TABLE vault_links (
	note_id     INTEGER NOT NULL REFERENCES vault_notes(id) ON DELETE CASCADE,
	target      TEXT NOT NULL,
	target_base TEXT NOT NULL,
	heading     TEXT NOT NULL DEFAULT '',
	alias       TEXT NOT NULL DEFAULT '',
	embed       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX vault_links_note ON vault_links(note_id);
CREATE INDEX vault_links_base ON vault_links(target_base);

CREATE TABLE vault_tags (
	note_id INTEGER NOT NULL REFERENCES vault_notes(id) ON DELETE CASCADE,
	tag     TEXT NOT NULL,
	PRIMARY KEY (note_id, tag)
) WITHOUT ROWID;
CREATE INDEX vault_tags_tag ON vault_tags(tag);

-- Full text, rowid = vault_notes.id.
CREATE VIRTUAL TABLE vault_fts USING fts5(title, body, tags, tokenize = 'porter unicode61');
