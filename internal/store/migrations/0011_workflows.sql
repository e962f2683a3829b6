-- Workflows (package workflow, docs/workflows.md): block graphs and their
-- traced runs. Times are unix milliseconds.
CREATE TABLE workflows (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL DEFAULT '',
	enabled     INTEGER NOT NULL DEFAULT 1,
	concurrency INTEGER NOT NULL DEFAULT 1 CHECK (concurrency BETWEEN 1 AND 16),
	graph       TEXT NOT NULL,             -- JSON graph, version 1
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);

-- A run; one still 'running' when agentd starts was cut by a stop or a
-- crash and is marked failed then. The newest 200 per workflow are kept.
CREATE TABLE workflow_runs (
	id          TEXT PRIMARY KEY,
	workflow_id TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
	trigger     TEXT NOT NULL,             -- manual, schedule
	status      TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed', 'cancelled')),
	started_at  INTEGER NOT NULL,
	finished_at INTEGER,
	inputs      TEXT NOT NULL DEFAULT '{}',
	outputs     TEXT NOT NULL DEFAULT '{}',
	error       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX workflow_runs_workflow ON workflow_runs(workflow_id, started_at);

-- One row per node execution, written as the node finishes (iteration is
-- the loop index for body nodes, -1 elsewhere).
CREATE TABLE workflow_trace (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	run_id      TEXT NOT NULL REFERENCES workflow_runs(id) ON DELETE CASCADE,
	node_id     TEXT NOT NULL,
	type        TEXT NOT NULL,
	iteration   INTEGER NOT NULL DEFAULT -1,
	started_at  INTEGER NOT NULL,
	finished_at INTEGER NOT NULL,
	status      TEXT NOT NULL,             -- success, failed, skipped, cancelled
	input       TEXT NOT NULL DEFAULT 'null',
	output      TEXT NOT NULL DEFAULT 'null',
	error       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX workflow_trace_run ON workflow_trace(run_id, id);
