-- Acknowledged delivery of final replies (docs/protocol.md, "Acknowledged
-- delivery"). For a device that opted in with auth{acks:true}, outbox rows
-- are kept after they were sent: sent = 1 marks a row a connection took,
-- awaiting the device's ack{session_id}; sent = 0 is a row no connection has
-- taken yet (the only kind other devices ever have).
ALTER TABLE outbox ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_session ON outbox(client_id, session_id, id);

-- Devices that opted in. Kept in the database because a device's first
-- connection after a restart receives its outbox before its auth frame
-- arrives: the flush must already know not to delete what it sends.
CREATE TABLE outbox_ack_clients (
	client_id  TEXT PRIMARY KEY,
	updated_at INTEGER NOT NULL -- unix milliseconds
);
