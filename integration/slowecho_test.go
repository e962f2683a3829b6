package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentd/agentd/internal/provider"
	"github.com/agentd/agentd/internal/provider/providertest"
)

// slowEcho is an edit for newBridgeEnvEditing: the default model becomes
// a fake OpenAI server that answers each of turns turns as the echo
// provider would, a word every delay. Tests of streaming need a model that
// streams over time: the echo provider's words are all there at once, and
// the gateway merges deltas that queue up into one.
func slowEcho(tb testing.TB, turns int, delay time.Duration) func(dir string) {
	rs := make([]providertest.Response, turns)
	for i := range rs {
		rs[i] = providertest.Response{Respond: func(body []byte) providertest.Response {
			var req providertest.OpenAIRequest
			_ = json.Unmarshal(body, &req)
			last := ""
			for _, m := range req.Messages {
				if m.Role == "user" {
					last = m.Text()
				}
			}
			return providertest.Response{Text: strings.SplitAfter(provider.EchoReply(last), " "), Delay: delay}
		}}
	}
	fake := providertest.NewOpenAI(tb, rs...)
	return func(dir string) { useFakeOpenAI(tb, dir, fake) }
}
