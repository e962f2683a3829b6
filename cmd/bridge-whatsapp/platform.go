//go:build !whatsappfake

package main

import "github.com/agentd/agentd/plugins/bridge/whatsapp"

// newPlatform is the real bridge over whatsmeow.
func newPlatform() *whatsapp.Platform { return whatsapp.New() }
