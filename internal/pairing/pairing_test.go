package pairing

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/store/storetest"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func open(t *testing.T) (*Pairing, *clock) {
	t.Helper()
	st := storetest.Open(t, t.TempDir())
	c := &clock{t: time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC)}
	return New(Options{DB: st.DB(), Now: c.now}), c
}

var codeRe = regexp.MustCompile(`^[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}$`)

func TestRequestApproveDeny(t *testing.T) {
	ctx := context.Background()
	p, c := open(t)
	var events []string
	p.OnChange(func(res, action, id string) { events = append(events, res+":"+action) })
	var pushed []string
	p.SetPush(func(_ context.Context, bridge string, users []string, welcome string) error {
		pushed = append(pushed, bridge+"="+strings.Join(users, ",")+"/"+welcome)
		return nil
	})

	out, code, err := p.Request(ctx, "telegram", "1", "Ada", "c1")
	if err != nil || out != Pending || !codeRe.MatchString(code) {
		t.Fatalf("first request = %q %q %v, want a pending code", out, code, err)
	}
	if out2, code2, _ := p.Request(ctx, "telegram", "1", "Ada", "c1"); out2 != Pending || code2 != code {
		t.Fatalf("repeat = %q %q, want the same code %q", out2, code2, code)
	}
	for i, u := range []string{"2", "3"} {
		if out, _, _ := p.Request(ctx, "telegram", u, "", "c"+u); out != Pending {
			t.Fatalf("request %d = %q", i+2, out)
		}
	}
	if out, _, _ := p.Request(ctx, "telegram", "4", "", "c4"); out != Full {
		t.Fatalf("4th pending = %q, want full", out)
	}
	if out, _, _ := p.Request(ctx, "discord", "4", "", "c4"); out != Pending {
		t.Fatalf("another bridge's first = %q, want pending (the cap is per bridge)", out)
	}

	if _, err := p.Approve(ctx, "ZZZZ-ZZZZ"); !errors.Is(err, ErrUnknownCode) {
		t.Fatalf("approve unknown = %v", err)
	}
	if _, err := p.Approve(ctx, "K0QF-2M9D"); !errors.Is(err, ErrBadInput) {
		t.Fatalf("approve with 0 = %v", err)
	}
	r, err := p.Approve(ctx, "  "+strings.ToLower(code)+" ")
	if err != nil || r.UserID != "1" || r.Bridge != "telegram" {
		t.Fatalf("approve = %+v %v", r, err)
	}
	if out, _, _ := p.Request(ctx, "telegram", "1", "Ada", "c1"); out != Allowed {
		t.Fatalf("after approval = %q", out)
	}
	if len(pushed) != 1 || pushed[0] != "telegram=1/c1" {
		t.Fatalf("pushed %q", pushed)
	}

	list, _ := p.List(ctx)
	var code2 string
	for _, r := range list {
		if r.UserID == "2" {
			code2 = r.Code
		}
	}
	if _, err := p.Deny(ctx, code2); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := p.Request(ctx, "telegram", "2", "", "c2"); out != Denied {
		t.Fatalf("after deny = %q", out)
	}
	if _, err := p.Approve(ctx, code2); !errors.Is(err, ErrDecided) {
		t.Fatalf("approve denied = %v", err)
	}

	c.t = c.t.Add(time.Hour)
	if _, err := p.Approve(ctx, code2); !errors.Is(err, ErrExpired) {
		t.Fatalf("approve expired = %v", err)
	}
	if out, code3, _ := p.Request(ctx, "telegram", "2", "", "c2"); out != Pending || code3 == code2 {
		t.Fatalf("after expiry = %q %q, want a new code", out, code3)
	}

	if err := p.Revoke(ctx, "telegram", "1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Revoke(ctx, "telegram", "1"); !errors.Is(err, ErrNotApproved) {
		t.Fatalf("revoke again = %v", err)
	}
	if got := pushed[len(pushed)-1]; got != "telegram=/" {
		t.Fatalf("revoke pushed %q", got)
	}
	want := []string{"pairing:requested", "pairing:requested", "pairing:requested", "pairing:requested", "pairing:approved", "pairing:denied", "pairing:requested", "pairing:revoked"}
	if strings.Join(events, ",") != strings.Join(want, ",") {
		t.Fatalf("events %q\nwant   %q", events, want)
	}
}

func TestCodes(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c := Format(NewCode())
		if !codeRe.MatchString(c) {
			t.Fatalf("code %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 999 {
		t.Fatalf("%d distinct codes of 1000", len(seen))
	}
}
