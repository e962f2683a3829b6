package provider_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/provider"
)

func TestEchoIsDeterministic(t *testing.T) {
	cases := []struct {
		name    string
		msgs    []provider.Message
		want    string
		prompt  int
		deltas0 string
	}{
		{
			name:   "echoes the last user message word by word",
			msgs:   []provider.Message{{Role: provider.RoleUser, Content: "first"}, {Role: provider.RoleAssistant, Content: "x y"}, {Role: provider.RoleUser, Content: "  hello   big\nworld "}},
			want:   "echo: hello big world " + provider.EchoNotice,
			prompt: 1 + 2 + 3 + 2, // system "be nice" + messages
		},
		{
			name:   "empty message still says it is an echo",
			msgs:   []provider.Message{{Role: provider.RoleUser, Content: "   "}},
			want:   "echo: (empty message) " + provider.EchoNotice,
			prompt: 2,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := provider.New(provider.Config{ID: "demo", Kind: provider.KindEcho})
			if err != nil {
				t.Fatal(err)
			}
			var first []string
			for run := 0; run < 2; run++ {
				var col collector
				res, err := p.Stream(context.Background(), &provider.Request{System: "be nice", Messages: c.msgs}, col.on)
				if err != nil {
					t.Fatal(err)
				}
				if res.Text != c.want || strings.Join(col.deltas(), "") != c.want {
					t.Errorf("text = %q deltas = %q, want %q", res.Text, col.deltas(), c.want)
				}
				if len(col.deltas()) != len(strings.Fields(c.want)) {
					t.Errorf("want one delta per word, got %d", len(col.deltas()))
				}
				if res.Usage.PromptTokens != c.prompt || res.Usage.CompletionTokens != len(strings.Fields(c.want)) {
					t.Errorf("usage = %+v", res.Usage)
				}
				if !strings.Contains(res.Text, "echo provider") {
					t.Error("reply does not say it is the echo provider")
				}
				if run == 0 {
					first = col.deltas()
				} else if strings.Join(first, "\x00") != strings.Join(col.deltas(), "\x00") {
					t.Error("two runs differ")
				}
			}
			models, _ := p.ListModels(context.Background())
			if len(models) != 1 || models[0].ID != provider.EchoModel {
				t.Errorf("models = %+v", models)
			}
		})
	}
}

func TestEchoDelayAndCancel(t *testing.T) {
	p := provider.NewEcho("slow", 50*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	var at time.Time
	res, err := p.Stream(ctx, &provider.Request{Messages: []provider.Message{{Role: provider.RoleUser, Content: "a b c d e f g h"}}},
		func(provider.Event) error {
			n++
			if n == 2 {
				at = time.Now()
				cancel()
			}
			return nil
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if time.Since(at) > 300*time.Millisecond { // 14 more words would take 700ms
		t.Errorf("did not stop promptly: %s", time.Since(at))
	}
	if n != 2 || res.Text != "echo: a" {
		t.Errorf("n=%d partial=%q", n, res.Text)
	}
}

// BenchmarkEchoDeltas measures the echo provider's raw delta rate.
func BenchmarkEchoDeltas(b *testing.B) {
	p := provider.NewEcho("bench", 0)
	req := &provider.Request{Messages: []provider.Message{{Role: provider.RoleUser, Content: strings.Repeat("word ", 200)}}}
	deltas := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Stream(context.Background(), req, func(provider.Event) error { deltas++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(deltas)/b.Elapsed().Seconds(), "deltas/s")
}
