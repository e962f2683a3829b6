// Package metrics owns agentd's Prometheus metrics: one registry of its own
// (no process-global default), the series other packages feed, and the
// handlers that serve them (GET /api/metrics for admin devices, and the
// opt-in loopback listener metrics.listen that serves /metrics alone).
// Label values are model ids, sources, transports, bridge names and states:
// never user, chat or session ids.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/route"
)

// Metrics is the registry and the series fed by events.
type Metrics struct {
	Registry *prometheus.Registry

	turnsStarted  *prometheus.CounterVec
	turnsFinished *prometheus.CounterVec
	turnSeconds   *prometheus.HistogramVec
	firstDelta    *prometheus.HistogramVec
	toolCalls     *prometheus.CounterVec
	tokens        *prometheus.CounterVec
	cost          *prometheus.CounterVec
	storeWrite    prometheus.Histogram
}

// latencyBuckets span a fast local model to a long tool-using turn.
var latencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// New makes the registry with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		turnsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_turns_started_total", Help: "Turns started, by model and source.",
		}, []string{"model", "source"}),
		turnsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_turns_finished_total", Help: "Turns finished, by model, source and status (ok, interrupted, failed, budget).",
		}, []string{"model", "source", "status"}),
		turnSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentd_turn_duration_seconds", Help: "Turn latency from start to the stored result, by model.", Buckets: latencyBuckets,
		}, []string{"model"}),
		firstDelta: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentd_turn_first_delta_seconds", Help: "Time from a turn's start to its first reply text, by model.", Buckets: latencyBuckets,
		}, []string{"model"}),
		toolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_tool_calls_total", Help: "Tool calls made by turns, by model.",
		}, []string{"model"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_tokens_total", Help: "Tokens used, by model and kind (prompt, completion).",
		}, []string{"model", "kind"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_cost_usd_total", Help: "Cost in USD at the prices of the time, by model.",
		}, []string{"model"}),
		storeWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentd_store_write_seconds", Help: "Latency of storing a finished turn (one SQLite transaction).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}),
	}
	m.Registry.MustRegister(m.turnsStarted, m.turnsFinished, m.turnSeconds, m.firstDelta, m.toolCalls,
		m.tokens, m.cost, m.storeWrite,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// TurnStarted counts a turn that began running.
func (m *Metrics) TurnStarted(model, source string) {
	m.turnsStarted.WithLabelValues(model, source).Inc()
}

// Turn is a finished turn, as session reports it.
type Turn struct {
	Model, Source, Status string
	Duration              time.Duration
	FirstDelta            time.Duration // 0: no text was streamed
	ToolCalls             int
	PromptTokens          int
	CompletionTokens      int
	CostUSD               float64
	StoreWrite            time.Duration
}

// TurnFinished records a finished turn.
func (m *Metrics) TurnFinished(t Turn) {
	m.turnsFinished.WithLabelValues(t.Model, t.Source, t.Status).Inc()
	m.turnSeconds.WithLabelValues(t.Model).Observe(t.Duration.Seconds())
	if t.FirstDelta > 0 {
		m.firstDelta.WithLabelValues(t.Model).Observe(t.FirstDelta.Seconds())
	}
	m.toolCalls.WithLabelValues(t.Model).Add(float64(t.ToolCalls))
	m.tokens.WithLabelValues(t.Model, "prompt").Add(float64(t.PromptTokens))
	m.tokens.WithLabelValues(t.Model, "completion").Add(float64(t.CompletionTokens))
	m.cost.WithLabelValues(t.Model).Add(t.CostUSD)
	if t.StoreWrite > 0 {
		m.storeWrite.Observe(t.StoreWrite.Seconds())
	}
}

// Gauge registers a gauge read at scrape time.
func (m *Metrics) Gauge(name, help string, fn func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// Counter registers a counter read at scrape time (a total kept elsewhere).
func (m *Metrics) Counter(name, help string, fn func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}

// Sample is one labelled value of a family read at scrape time.
type Sample struct {
	Labels []string
	Value  float64
}

// Family registers a labelled family read at scrape time (bridges by name
// and state, connections by transport).
func (m *Metrics) Family(name, help string, typ prometheus.ValueType, labels []string, fn func() []Sample) {
	m.Registry.MustRegister(&family{desc: prometheus.NewDesc(name, help, labels, nil), typ: typ, fn: fn})
}

type family struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	fn   func() []Sample
}

func (f *family) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

func (f *family) Collect(ch chan<- prometheus.Metric) {
	for _, s := range f.fn() {
		if m, err := prometheus.NewConstMetric(f.desc, f.typ, s.Value, s.Labels...); err == nil {
			ch <- m
		}
	}
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Routes is GET /api/metrics: admin, as it shows the agent's whole activity.
func Routes(m *Metrics) []route.Route {
	return []route.Route{{Pattern: "GET /api/metrics", Cap: auth.CapAdmin, Handler: m.Handler()}}
}

// Mux serves /metrics alone, for the plain loopback listener.
func (m *Metrics) Mux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	return mux
}
