package pairing

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// find returns the request whose code equals code. Every stored code is
// compared, each in constant time, so the answer's timing says nothing
// about how much of a guess was right. p.mu held.
func (p *Pairing) find(ctx context.Context, code string) (Request, error) {
	all, err := p.requests(ctx, selectRequests)
	if err != nil {
		return Request{}, err
	}
	var hit *Request
	for i := range all {
		stored := []byte(all[i].Code)
		if subtle.ConstantTimeCompare(stored, []byte(code)) == 1 {
			hit = &all[i]
		}
	}
	if hit == nil {
		return Request{}, fmt.Errorf("%w: %s (check the code; a code is valid for %s)", ErrUnknownCode, Format(code), p.expiry())
	}
	hit.Code = Format(hit.Code)
	if !p.now().Before(hit.ExpiresAt) {
		return Request{}, fmt.Errorf("%w: %s expired at %s; ask %s to write to the bot again for a new code",
			ErrExpired, Format(code), hit.ExpiresAt.Format("15:04"), who(*hit))
	}
	return *hit, nil
}

func who(r Request) string {
	if r.UserName != "" {
		return r.UserName
	}
	return "the user"
}

// Approve admits the requester of code on its bridge: stored in the
// database, pushed to the running bridge (which says "You're in.").
func (p *Pairing) Approve(ctx context.Context, code string) (Request, error) {
	return p.decide(ctx, code, p.approveLocked)
}

// decide finds the live request of the code an owner typed and runs act
// on it, under p.mu.
func (p *Pairing) decide(ctx context.Context, typed string, act func(context.Context, Request, string) (Request, error)) (Request, error) {
	code, err := Normalize(typed)
	if err != nil {
		return Request{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r, err := p.find(ctx, code)
	if err != nil {
		return Request{}, err
	}
	return act(ctx, r, code)
}

func (p *Pairing) approveLocked(ctx context.Context, r Request, code string) (Request, error) {
	if r.State == Denied {
		return Request{}, fmt.Errorf("%w: %s (%s); it expires at %s, then they can ask again", ErrDecided, Format(code), who(r), r.ExpiresAt.Format("15:04"))
	}
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return Request{}, fmt.Errorf("pairing: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO bridge_users (bridge, user_id, user_name, approved_at) VALUES (?, ?, ?, ?)`,
		r.Bridge, r.UserID, r.UserName, ms(p.now())); err != nil {
		return Request{}, fmt.Errorf("pairing: approve: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM pairing_requests WHERE code = ?`, code); err != nil {
		return Request{}, fmt.Errorf("pairing: approve: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Request{}, fmt.Errorf("pairing: approve: %w", err)
	}
	p.log.Info("pairing approved", "bridge", r.Bridge, "user_id", r.UserID, "user_name", r.UserName)
	p.alerts.Clear("pairing:"+code, "")
	p.changed(ActionApproved, r.Code)
	p.pushLocked(ctx, r.Bridge, r.ChatID)
	return r, nil
}

// Deny refuses the requester of code; the refusal stands until the code
// expires, after which they may ask again.
func (p *Pairing) Deny(ctx context.Context, code string) (Request, error) {
	return p.decide(ctx, code, p.denyLocked)
}

func (p *Pairing) denyLocked(ctx context.Context, r Request, code string) (Request, error) {
	if _, err := p.db.ExecContext(ctx, `UPDATE pairing_requests SET state = 'denied' WHERE code = ?`, code); err != nil {
		return Request{}, fmt.Errorf("pairing: deny: %w", err)
	}
	r.State = Denied
	p.log.Info("pairing denied", "bridge", r.Bridge, "user_id", r.UserID, "user_name", r.UserName)
	p.alerts.Clear("pairing:"+code, "")
	p.changed(ActionDenied, r.Code)
	return r, nil
}

// Revoke removes an approved user from bridge; the bridge refuses them
// from their next message on.
func (p *Pairing) Revoke(ctx context.Context, bridge, userID string) error {
	if bridge == "" || userID == "" {
		return fmt.Errorf("%w: bridge and user are required", ErrBadInput)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	res, err := p.db.ExecContext(ctx, `DELETE FROM bridge_users WHERE bridge = ? AND user_id = ?`, bridge, userID)
	if err != nil {
		return fmt.Errorf("pairing: revoke: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s on %s (users from allowed_users in openagent.yaml are removed there)", ErrNotApproved, userID, bridge)
	}
	p.log.Info("pairing revoked", "bridge", bridge, "user_id", userID)
	p.changed(ActionRevoked, bridge+"/"+userID)
	p.pushLocked(ctx, bridge, "")
	return nil
}

// pushLocked sends bridge's approved users to it; a bridge that is not
// running gets them at its next launch anyway, so a failure is logged
// only. p.mu held.
func (p *Pairing) pushLocked(ctx context.Context, bridge, welcomeChat string) {
	if p.push == nil {
		return
	}
	users, err := p.approvedIDs(ctx, bridge)
	if err != nil {
		p.log.Error("pairing: list approved users", "bridge", bridge, "err", err)
		return
	}
	if err := p.push(ctx, bridge, users, welcomeChat); err != nil {
		p.log.Warn("pairing: allowed users not pushed to the bridge (it gets them when it starts)", "bridge", bridge, "err", err)
	}
}

// List returns the requests not yet expired, oldest first.
func (p *Pairing) List(ctx context.Context) ([]Request, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	rs, err := p.requests(ctx, selectRequests+` WHERE expires_at > ? ORDER BY created_at, code`, ms(now))
	for i := range rs {
		rs[i].Code = Format(rs[i].Code)
		rs[i].AgeSeconds = now.Sub(rs[i].CreatedAt).Seconds()
	}
	return rs, err
}

// Users returns the approved users of every bridge.
func (p *Pairing) Users(ctx context.Context) ([]User, error) {
	rows, err := p.db.QueryContext(ctx, `SELECT bridge, user_id, user_name, approved_at FROM bridge_users ORDER BY bridge, approved_at, user_id`)
	if err != nil {
		return nil, fmt.Errorf("pairing: users: %w", err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		var u User
		var at int64
		if err := rows.Scan(&u.Bridge, &u.UserID, &u.UserName, &at); err != nil {
			return nil, fmt.Errorf("pairing: users: %w", err)
		}
		u.ApprovedAt = time.UnixMilli(at)
		out = append(out, u)
	}
	return out, rows.Err()
}

// Approved returns the user ids approved on bridge (the supervisor adds
// them to the bridge's allowed users at launch).
func (p *Pairing) Approved(ctx context.Context, bridge string) ([]string, error) {
	return p.approvedIDs(ctx, bridge)
}

func (p *Pairing) approvedIDs(ctx context.Context, bridge string) ([]string, error) {
	rows, err := p.db.QueryContext(ctx, `SELECT user_id FROM bridge_users WHERE bridge = ? ORDER BY approved_at, user_id`, bridge)
	if err != nil {
		return nil, fmt.Errorf("pairing: approved users: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("pairing: approved users: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// selectRequests reads every column requests scans.
const selectRequests = `SELECT code, bridge, user_id, user_name, chat_id, state, created_at, expires_at FROM pairing_requests`

func (p *Pairing) requests(ctx context.Context, q string, args ...any) ([]Request, error) {
	rows, err := p.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("pairing: requests: %w", err)
	}
	defer rows.Close()
	out := []Request{}
	for rows.Next() {
		var r Request
		var created, expires int64
		if err := rows.Scan(&r.Code, &r.Bridge, &r.UserID, &r.UserName, &r.ChatID, &r.State, &created, &expires); err != nil {
			return nil, fmt.Errorf("pairing: requests: %w", err)
		}
		r.CreatedAt, r.ExpiresAt = time.UnixMilli(created), time.UnixMilli(expires)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("pairing: requests: %w", err)
	}
	return out, nil
}
