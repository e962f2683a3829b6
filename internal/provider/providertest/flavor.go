package providertest

import (
	"testing"

	"github.com/agentd/agentd/internal/provider"
)

// Flavor is one of the wire protocols the fake speaks, for tests that run
// against both.
type Flavor struct {
	Name string                                // "openai", "anthropic"
	Kind string                                // the provider kind that speaks it
	New  func(testing.TB, ...Response) *Server // starts a fake of it
}

// Flavors are both protocols, OpenAI first.
var Flavors = []Flavor{
	{"openai", provider.KindOpenAI, NewOpenAI},
	{"anthropic", provider.KindAnthropic, NewAnthropic},
}
