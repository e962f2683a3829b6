package logfile

import (
	"errors"
	"log/slog"
	"net/url"
	"strconv"
	"time"
)

// MaxLines bounds a query's lines.
const MaxLines = 1000

// ParseQuery reads GET /api/logs' parameters: lines (1–1000, default 100),
// level (debug, info, warn, error: at least), component, since (RFC 3339).
// (The route itself is the daemon's: auth logs through this package.)
func ParseQuery(v url.Values) (Query, error) {
	q := Query{Lines: 100, Level: slog.LevelDebug, Component: v.Get("component")}
	if s := v.Get("lines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLines {
			return q, errors.New("lines: want a whole number from 1 to " + strconv.Itoa(MaxLines))
		}
		q.Lines = n
	}
	if s := v.Get("level"); s != "" {
		if s == "warning" {
			s = "warn"
		}
		if err := q.Level.UnmarshalText([]byte(s)); err != nil {
			return q, errors.New("level: want debug, info, warn or error")
		}
	}
	if s := v.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return q, errors.New("since: want an RFC 3339 time such as 2026-12-01T10:00:00Z")
		}
		q.Since = t
	}
	return q, nil
}
