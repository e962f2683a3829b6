package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/agentd/agentd/client"
	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/wire"
)

// A chat turn over the local unix socket, as `agentd chat -m` does it.
func Example() {
	ctx := context.Background()
	id, err := devicecert.LoadIdentity("my-agent/keys/owner.json")
	if err != nil {
		log.Fatal(err)
	}
	d := client.Unix("my-agent/agentd.sock", id)

	var health map[string]any
	if err := d.GetJSON(ctx, "/api/health", &health); err != nil {
		log.Fatal(err) // an *APIError carries the server's code and message
	}

	c, err := d.DialWS(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(wire.TextFinal{Text: "hello", SessionID: "cli"}); err != nil {
		log.Fatal(err)
	}
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			log.Fatal(err)
		}
		switch m := m.(type) {
		case wire.Delta:
			fmt.Print(m.Text)
		case wire.Queued:
			fmt.Printf("(queued #%d)\n", m.Position)
		case wire.TurnComplete:
			fmt.Println()
			return
		}
	}
}
