package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// onceMacro prefixes a one-shot schedule: "@once:2026-12-24T18:00:00+01:00".
const onceMacro = "@once:"

// Schedule is a parsed cron_expression in its time zone.
type Schedule struct {
	expr string
	loc  *time.Location
	once time.Time   // set for @once:
	cron gocron.Cron // set otherwise; the parser gocron itself uses
	def  gocron.JobDefinition
}

// ParseSchedule parses expr — 5 cron fields, an optional leading seconds
// field, a macro (@hourly, @daily, @weekly, @monthly, @yearly, @every 1h30m)
// or @once:<RFC 3339> — in time zone loc. The error is the parser's reason.
//
// Daylight saving time, the rules of gocron's DaylightSavingsTimeRunAfterTransition
// applied in the task's own zone: a wall-clock time that occurs twice
// (fall-back) fires once, at its first occurrence; a time that does not
// exist (spring-forward gap) fires right after the transition, at the
// instant it would have had without DST.
func ParseSchedule(expr string, loc *time.Location, now time.Time) (*Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, errors.New("cron_expression must not be empty")
	}
	s := &Schedule{expr: expr, loc: loc}
	if rest, ok := strings.CutPrefix(expr, onceMacro); ok {
		t, err := time.Parse(time.RFC3339, rest)
		if err != nil {
			return nil, fmt.Errorf("@once wants an RFC 3339 time such as 2026-12-24T18:00:00+01:00: %w", err)
		}
		s.once = t
		s.def = gocron.OneTimeJob(gocron.OneTimeJobStartDateTime(t))
		return s, nil
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, errors.New("put the time zone in the timezone field, not in cron_expression")
	}
	// gocron's default cron (robfig/cron) with seconds optional and
	// descriptors; it reads the zone from the CRON_TZ prefix it adds.
	c := gocron.NewDefaultCron(true)
	if err := c.IsValid(expr, loc, now); err != nil {
		return nil, errors.New(cronReason(err))
	}
	s.cron = c
	// gocron gets this Schedule as its Cron, so that what it fires and
	// what Next reports (next_run, catch-up) are the same: gocron's own DST
	// handling compares wall clocks in the scheduler's zone, not the
	// task's, and would fire a repeated 01:30 twice.
	s.def = gocron.CronJob(expr, true)
	return s, nil
}

// IsValid implements gocron.Cron; the expression was checked by
// ParseSchedule.
func (s *Schedule) IsValid(string, *time.Location, time.Time) error { return nil }

// cronReason strips gocron's wrapper from a parse error: the parser's own
// words are what helps ("expected exactly 5 fields, found 4: …").
func cronReason(err error) string {
	if errors.Is(err, gocron.ErrCronJobInvalid) {
		return "the expression never fires"
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, gocron.ErrCronJobParse.Error())
	msg = strings.TrimSpace(strings.TrimPrefix(msg, "\n"))
	if msg == "" {
		return "invalid cron expression"
	}
	return "invalid cron expression: " + msg
}

// Once reports whether the schedule fires a single time.
func (s *Schedule) Once() bool { return !s.once.IsZero() }

// Next returns the first fire strictly after t, zero when there is none.
// Like gocron, a wall-clock time repeated by a DST fall-back fires once.
func (s *Schedule) Next(t time.Time) time.Time {
	if s.Once() {
		if s.once.After(t) {
			return s.once
		}
		return time.Time{}
	}
	t = t.In(s.loc)
	next := s.cron.Next(t)
	if next.IsZero() {
		return next
	}
	if sameWall(t, next) {
		next = s.cron.Next(next)
	}
	return gapFire(t, next)
}

// gapFire is gocron's DaylightSavingsTimeRunAfterTransition: cron skips a
// day whose wall-clock time falls in a spring-forward gap; it fires right
// after the transition instead. If a day between last and next had its
// time in a gap, that day's adjusted time is the next fire.
func gapFire(last, next time.Time) time.Time {
	loc := last.Location()
	for day := last.AddDate(0, 0, 1); day.Before(next); day = day.AddDate(0, 0, 1) {
		c := time.Date(day.Year(), day.Month(), day.Day(), next.Hour(), next.Minute(), next.Second(), 0, loc)
		if c.Hour() == next.Hour() && c.Minute() == next.Minute() && c.Second() == next.Second() {
			continue
		}
		off := time.Duration(next.Hour()-c.Hour())*time.Hour + time.Duration(next.Minute()-c.Minute())*time.Minute +
			time.Duration(next.Second()-c.Second())*time.Second
		if off > 0 {
			c = c.Add(off)
		}
		if c.After(last) && c.Before(next) {
			return c
		}
	}
	return next
}

func sameWall(a, b time.Time) bool {
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd && a.Hour() == b.Hour() && a.Minute() == b.Minute() && a.Second() == b.Second()
}

// Slots counts the fires in (from, to] (at most limit) and returns the
// last of them.
func (s *Schedule) Slots(from, to time.Time, limit int) (n int, last time.Time) {
	for t := s.Next(from); !t.IsZero() && !t.After(to) && n < limit; t = s.Next(t) {
		n++
		last = t
	}
	return n, last
}

// dailyLike reports whether fires are at least about a day apart (a DST
// day is 23 h): those are caught up by default after a downtime.
func (s *Schedule) dailyLike(now time.Time) bool {
	if s.Once() {
		return true
	}
	a := s.Next(now)
	b := s.Next(a)
	return a.IsZero() || b.IsZero() || b.Sub(a) >= 23*time.Hour
}
