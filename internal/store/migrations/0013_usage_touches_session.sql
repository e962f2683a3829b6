-- A finished turn's usage row touches its session (sessions.updated_at,
-- the order of GET /api/sessions) in SQLite itself: on the turn path a
-- statement of its own cost as much as the row it wrote.
CREATE TRIGGER turn_usage_touches_session AFTER INSERT ON turn_usage BEGIN
	UPDATE sessions SET updated_at = NEW.created_at WHERE id = NEW.session_id;
END;
