-- The model catalog (package catalog, docs/rest-models.md): LLM providers and
-- the models they serve. Rows with source 'config' are seeded from
-- openagent.yaml on every start and config reload; rows with source 'api'
-- were added over REST and are kept across restarts and reloads.
--
-- config_hash is a digest of the openagent.yaml entry as last seeded ('' for
-- api rows). overridden = 1 marks a config row edited over REST: the edit
-- survives restarts and reloads until the file's entry itself changes (its
-- digest differs), and then the file wins again.
CREATE TABLE providers (
	id          TEXT PRIMARY KEY,
	kind        TEXT NOT NULL,              -- openai, anthropic, echo (checked in Go)
	base_url    TEXT NOT NULL DEFAULT '',   -- '' = the kind's default
	api_key     TEXT NOT NULL DEFAULT '',   -- never returned by the REST API
	source      TEXT NOT NULL CHECK (source IN ('config', 'api')),
	config_hash TEXT NOT NULL DEFAULT '',
	overridden  INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL,           -- unix milliseconds
	updated_at  INTEGER NOT NULL
);

CREATE TABLE models (
	id                    TEXT PRIMARY KEY,
	provider              TEXT NOT NULL REFERENCES providers(id) ON DELETE RESTRICT ON UPDATE RESTRICT,
	name                  TEXT NOT NULL,    -- the provider's (upstream) name for the model
	input_price_per_mtok  REAL NOT NULL DEFAULT 0 CHECK (input_price_per_mtok >= 0),
	output_price_per_mtok REAL NOT NULL DEFAULT 0 CHECK (output_price_per_mtok >= 0),
	enabled               INTEGER NOT NULL DEFAULT 1,
	source                TEXT NOT NULL CHECK (source IN ('config', 'api')),
	config_hash           TEXT NOT NULL DEFAULT '',
	overridden            INTEGER NOT NULL DEFAULT 0,
	created_at            INTEGER NOT NULL,
	updated_at            INTEGER NOT NULL
);
CREATE INDEX models_provider ON models(provider);
