-- Usage and budgets (internal/usage). Each usage row keeps the prices in
-- force when its turn ran, so changing a model's price never rewrites
-- history, and its source (the session id's prefix: tg, dc, wa, scheduler,
-- workflow; cli for sessions without one).
ALTER TABLE turn_usage ADD COLUMN input_price_per_mtok REAL NOT NULL DEFAULT 0;
ALTER TABLE turn_usage ADD COLUMN output_price_per_mtok REAL NOT NULL DEFAULT 0;
ALTER TABLE turn_usage ADD COLUMN source TEXT NOT NULL DEFAULT 'cli';
UPDATE turn_usage SET source = substr(session_id, 1, instr(session_id, ':') - 1)
	WHERE instr(session_id, ':') > 1;
CREATE INDEX turn_usage_model ON turn_usage(model, created_at);

-- Spending rules: scope all | model:<id> | source:<prefix>, per UTC day or
-- month, limit in USD, alert thresholds as fractions of the limit.
CREATE TABLE budgets (
	id         TEXT PRIMARY KEY,
	scope      TEXT NOT NULL,
	period     TEXT NOT NULL, -- day, month
	limit_usd  REAL NOT NULL,
	alert_at   TEXT NOT NULL DEFAULT '[]', -- JSON list of fractions
	enabled    INTEGER NOT NULL DEFAULT 1,
	created_at INTEGER NOT NULL, -- unix milliseconds
	updated_at INTEGER NOT NULL
);

-- Alerts already raised: one per budget, window and threshold (1 = the
-- limit stopped a call), so a restart does not raise them again.
CREATE TABLE budget_alerts (
	budget_id    TEXT NOT NULL REFERENCES budgets(id) ON DELETE CASCADE,
	window_start INTEGER NOT NULL, -- unix milliseconds
	threshold    REAL NOT NULL,
	created_at   INTEGER NOT NULL,
	PRIMARY KEY (budget_id, window_start, threshold)
);
