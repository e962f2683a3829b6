-- Scheduled tasks (package scheduler, docs/scheduler.md). Times are unix
-- milliseconds. armed_at is when the current schedule began to count (create,
-- enable, schedule change); last_slot the last fire time accounted for
-- (fired, skipped or recorded missed): after a downtime the slots in
-- (max(armed_at, last_slot), now] are the missed ones.
CREATE TABLE scheduled_tasks (
	id              TEXT PRIMARY KEY,
	name            TEXT NOT NULL,
	cron_expression TEXT NOT NULL,
	timezone        TEXT NOT NULL DEFAULT '',   -- '' = scheduler.timezone, else local
	prompt          TEXT NOT NULL,
	session_id      TEXT NOT NULL DEFAULT '',   -- '' = scheduler:<id>
	deliver_to      TEXT NOT NULL DEFAULT '[]', -- JSON array of session ids
	model           TEXT NOT NULL DEFAULT '',   -- '' = the session's model
	enabled         INTEGER NOT NULL DEFAULT 1,
	catch_up        TEXT NOT NULL CHECK (catch_up IN ('skip', 'once')),
	armed_at        INTEGER NOT NULL,
	last_slot       INTEGER,
	last_run        INTEGER,
	last_status     TEXT NOT NULL DEFAULT '',
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL
);

-- Run history, the newest 100 per task kept. status: running, success,
-- failed, skipped (a fire while the previous run was active), missed (slots
-- that passed while agentd was down and were not caught up).
CREATE TABLE scheduled_task_runs (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	task_id      TEXT NOT NULL REFERENCES scheduled_tasks(id) ON DELETE CASCADE,
	trigger      TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual', 'catch_up')),
	scheduled_at INTEGER,
	started_at   INTEGER NOT NULL,
	finished_at  INTEGER,
	status       TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed', 'skipped', 'missed')),
	output       TEXT NOT NULL DEFAULT '',
	error        TEXT NOT NULL DEFAULT '',
	usage        TEXT NOT NULL DEFAULT '{}'  -- JSON wire.Usage
);
CREATE INDEX scheduled_task_runs_task ON scheduled_task_runs(task_id, id);
