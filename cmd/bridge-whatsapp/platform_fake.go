//go:build whatsappfake

package main

import (
	"context"
	"path/filepath"

	"github.com/agentd/agentd/plugins/bridge/whatsapp"
	"github.com/agentd/agentd/plugins/bridge/whatsapp/whatsapptest"
)

// Fake account of the test-only build.
const (
	FakePN  = "15550001111"
	FakeLID = "200000000000001"
)

// newPlatform, in the test-only build (-tags whatsappfake), runs the bridge
// over whatsapptest's fake client driven through files in
// <DataDir>/fake (see whatsapptest.Drive), so that integration tests can
// run the real binary under agentd's real supervisor. No fake of
// WhatsApp's protocol exists; the production build never contains this.
func newPlatform() *whatsapp.Platform {
	return whatsapp.NewWith(func(ctx context.Context, dataDir string) (whatsapp.Client, error) {
		dir := filepath.Join(dataDir, "fake")
		c, err := whatsapptest.Driven(dir, FakePN, FakeLID)
		if err != nil {
			return nil, err
		}
		go whatsapptest.Drive(ctx, c, dir)
		return c, nil
	})
}
