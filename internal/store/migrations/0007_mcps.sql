-- MCP tool servers (package mcp, docs/mcp.md). openagent.yaml's mcps: section
-- seeds this table once (meta key mcps_seeded); after that the table is the
-- truth, changed over REST and `agentd mcp`. kind 'builtin' rows stand for
-- agentd's own tool sets (no process): they can be disabled, not deleted.
CREATE TABLE mcps (
	name             TEXT PRIMARY KEY,
	kind             TEXT NOT NULL CHECK (kind IN ('custom', 'builtin')),
	command          TEXT NOT NULL DEFAULT '[]',  -- JSON argv of a stdio server
	url              TEXT NOT NULL DEFAULT '',    -- a Streamable HTTP server
	env              TEXT NOT NULL DEFAULT '{}',  -- JSON object; values may be ${NAME}
	headers          TEXT NOT NULL DEFAULT '{}',  -- JSON object; values may be ${NAME}
	enabled          INTEGER NOT NULL DEFAULT 1,
	timeout_ms       INTEGER NOT NULL DEFAULT 0 CHECK (timeout_ms >= 0),        -- 0 = 60 s
	max_result_bytes INTEGER NOT NULL DEFAULT 0 CHECK (max_result_bytes >= 0),  -- 0 = 256 KiB
	created_at       INTEGER NOT NULL,            -- unix milliseconds
	updated_at       INTEGER NOT NULL
);
