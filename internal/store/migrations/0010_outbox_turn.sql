-- ack{session_id, turn_id} forgets exactly one turn's frames
-- (docs/protocol.md, "Acknowledged delivery"); '' for rows stored before.
ALTER TABLE outbox ADD COLUMN turn_id TEXT NOT NULL DEFAULT '';
