package telegramtest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

type envelope struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  struct {
		RetryAfter int `json:"retry_after"`
	} `json:"parameters"`
}

func post(t *testing.T, s *Server, token, method, ctype, body string) (int, envelope) {
	t.Helper()
	resp, err := http.Post(s.URL()+"/bot"+token+"/"+method, ctype, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, env
}

func TestFakeAPIErrorsAndBodies(t *testing.T) {
	s := New(t)
	s.FailNext("sendMessage", 429, "Too Many Requests: retry after 3", 3)
	tests := []struct {
		name, token, method, ctype, body string
		status                           int
		desc                             string
	}{
		{"wrong token", "1:bad", "getMe", "", "", 401, "Unauthorized"},
		{"unknown method", Token, "fly", "", "", 404, "Not Found"},
		{"rate limited", Token, "sendMessage", "application/json", `{"chat_id":5,"text":"x"}`, 429, "Too Many Requests: retry after 3"},
		{"json body", Token, "sendMessage", "application/json", `{"chat_id":5,"text":"a &lt;b&gt;","parse_mode":"HTML"}`, 200, ""},
		{"form body", Token, "sendMessage", "application/x-www-form-urlencoded", url.Values{"chat_id": {"5"}, "text": {"plain"}}.Encode(), 200, ""},
		{"bad html", Token, "sendMessage", "application/json", `{"chat_id":5,"text":"<x>","parse_mode":"HTML"}`, 400, `Bad Request: can't parse entities: unsupported start tag "x" at byte offset 0`},
		{"too long", Token, "sendMessage", "application/json", `{"chat_id":5,"text":"` + strings.Repeat("é", MaxMessageLen+1) + `"}`, 400, "Bad Request: message is too long"},
		{"empty", Token, "sendMessage", "application/json", `{"chat_id":5,"text":"  "}`, 400, "Bad Request: message text is empty"},
		{"edit missing", Token, "editMessageText", "application/json", `{"chat_id":5,"message_id":99,"text":"x"}`, 400, "Bad Request: message to edit not found"},
		{"edit same", Token, "editMessageText", "application/json", `{"chat_id":5,"message_id":2,"text":"plain"}`, 400, "Bad Request: message is not modified"},
		{"bad file", Token, "getFile", "application/json", `{"file_id":"nope"}`, 400, "Bad Request: invalid file_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, env := post(t, s, tc.token, tc.method, tc.ctype, tc.body)
			if code != tc.status || env.OK != (tc.status == 200) || (tc.status != 200 && env.ErrorCode != tc.status) || !strings.HasPrefix(env.Description, tc.desc) {
				t.Fatalf("got %d %+v", code, env)
			}
			if tc.status == 429 && env.Parameters.RetryAfter != 3 {
				t.Fatalf("retry_after = %d", env.Parameters.RetryAfter)
			}
		})
	}
	if m := s.Messages(5); len(m) != 2 || m[0].Text != "a <b>" || m[1].Text != "plain" {
		t.Fatalf("messages = %+v", m)
	}
}

func TestFakeGetUpdatesOffsets(t *testing.T) {
	s := New(t)
	u := User(7, "U")
	a := s.Text(PrivateChat(u), u, "one")
	b := s.Text(PrivateChat(u), u, "two")
	ids := func(env envelope) []int64 {
		var ups []struct {
			ID int64 `json:"update_id"`
		}
		json.Unmarshal(env.Result, &ups)
		var out []int64
		for _, x := range ups {
			out = append(out, x.ID)
		}
		return out
	}
	_, env := post(t, s, Token, "getUpdates", "application/json", `{"limit":1}`)
	if got := ids(env); len(got) != 1 || got[0] != a {
		t.Fatalf("first poll = %v", got)
	}
	// Unconfirmed updates come again.
	_, env = post(t, s, Token, "getUpdates", "application/json", `{}`)
	if got := ids(env); len(got) != 2 {
		t.Fatalf("second poll = %v", got)
	}
	// offset = b confirms a only.
	_, env = post(t, s, Token, "getUpdates", "application/json", `{"offset":`+itoa(b)+`}`)
	if got := ids(env); len(got) != 1 || got[0] != b {
		t.Fatalf("third poll = %v", got)
	}
	// Long poll: waits for a new update, which arrives in time.
	go func() { time.Sleep(200 * time.Millisecond); s.Text(PrivateChat(u), u, "three") }()
	start := time.Now()
	_, env = post(t, s, Token, "getUpdates", "application/json", `{"offset":`+itoa(b+1)+`,"timeout":5}`)
	if got := ids(env); len(got) != 1 || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("long poll = %v after %v", got, time.Since(start))
	}
	// A second poller makes the first fail with 409.
	done := make(chan envelope)
	go func() {
		_, env := post(t, s, Token, "getUpdates", "application/json", `{"offset":`+itoa(b+2)+`,"timeout":5}`)
		done <- env
	}()
	time.Sleep(200 * time.Millisecond)
	second := make(chan envelope)
	go func() {
		_, env := post(t, s, Token, "getUpdates", "application/json", `{"offset":`+itoa(b+2)+`,"timeout":1}`)
		second <- env
	}()
	if env := <-done; env.ErrorCode != 409 {
		t.Fatalf("first poller got %+v, want 409", env)
	}
	if env := <-second; !env.OK {
		t.Fatalf("second poller got %+v", env)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// Flood rules refuse with 429 retry_after, per chat or for the whole bot,
// and count a call inside the refused wait as a violation.
func TestFakeFloodRules(t *testing.T) {
	s := New(t)
	s.SetRetryUnit(20 * time.Millisecond)
	s.AddRule(Rule{Methods: []string{"sendMessage"}, PerChat: true, Limit: 1, Window: time.Hour, RetryAfter: 5})
	send := func(chat string) envelope {
		_, env := post(t, s, Token, "sendMessage", "application/json", `{"chat_id":`+chat+`,"text":"x"}`)
		return env
	}
	if env := send("1"); !env.OK {
		t.Fatalf("first call refused: %+v", env)
	}
	if env := send("2"); !env.OK {
		t.Fatalf("another chat's first call refused: %+v", env)
	}
	env := send("1")
	if env.OK || env.ErrorCode != 429 || env.Parameters.RetryAfter != 5 || env.Description != "Too Many Requests: retry after 5" {
		t.Fatalf("over the limit: %+v", env)
	}
	if env := send("1"); env.OK || env.ErrorCode != 429 {
		t.Fatalf("call inside the wait: %+v", env)
	}
	if got := s.Flood(); got != (FloodStats{Refused: 2, Violations: 1}) {
		t.Fatalf("books %v", got)
	}
	time.Sleep(110 * time.Millisecond) // 5 units of 20 ms
	send("1")                          // honoured; refused again by the hourly limit
	if got := s.Flood(); got.Honoured != 1 || got.Violations != 1 {
		t.Fatalf("books after the wait %v", got)
	}

	// A global flood holds every chat.
	s.ClearRules()
	s.AddRule(Rule{Refuse: 1, RetryAfter: 65})
	if env := send("3"); env.ErrorCode != 429 || env.Parameters.RetryAfter != 65 {
		t.Fatalf("global flood: %+v", env)
	}
	if env := send("4"); env.ErrorCode != 429 {
		t.Fatalf("another chat during a global flood: %+v", env)
	}
	if got := s.Flood(); got.Violations != 2 {
		t.Fatalf("books %v, want the other chat's call counted as a violation", got)
	}
}

// A confirmed update can be delivered again; an album is several updates
// with one media_group_id.
func TestFakeRedeliverAndAlbum(t *testing.T) {
	s := New(t)
	u := User(7, "Ann")
	id := s.Text(PrivateChat(u), u, "hello")
	poll := func(offset string) []map[string]any {
		_, env := post(t, s, Token, "getUpdates", "application/json", `{"offset":`+offset+`}`)
		var ups []map[string]any
		json.Unmarshal(env.Result, &ups)
		return ups
	}
	if ups := poll("0"); len(ups) != 1 {
		t.Fatalf("updates %v", ups)
	}
	if ups := poll("102"); len(ups) != 0 {
		t.Fatalf("confirmed update still there: %v", ups)
	}
	s.Redeliver(id)
	if ups := poll("0"); len(ups) != 1 || ups[0]["update_id"].(float64) != float64(id) {
		t.Fatalf("redelivered %v", ups)
	}
	ids := s.Album(PrivateChat(u), u, "two cats", []byte("A"), []byte("B"))
	ups := poll("102")
	if len(ids) != 2 || len(ups) != 2 {
		t.Fatalf("album ids %v updates %v", ids, ups)
	}
	m0, m1 := ups[0]["message"].(map[string]any), ups[1]["message"].(map[string]any)
	if m0["media_group_id"] == nil || m0["media_group_id"] != m1["media_group_id"] || m0["caption"] != "two cats" || m1["caption"] != nil {
		t.Fatalf("album messages %v / %v", m0, m1)
	}
}
