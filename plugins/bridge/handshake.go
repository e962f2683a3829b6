package bridge

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-plugin"
)

// Handshake versions. ProtocolVersion is go-plugin's wire handshake: bump it
// only when the plugin transport itself changes incompatibly, since a
// mismatch refuses the plugin before any RPC. APIVersion* are the
// control-plane API versions negotiated through Info/Configure, so that
// agentd and a bridge of different releases can agree on the newest version
// both speak instead of failing outright.
const (
	ProtocolVersion = 1

	// MagicCookieKey and MagicCookieValue are not a secret: they only make
	// a bridge binary run by hand explain itself instead of hanging, and
	// keep agentd from mistaking another go-plugin program for a bridge.
	MagicCookieKey   = "AGENTD_BRIDGE_PLUGIN"
	MagicCookieValue = "6f3c1e0a9b2d4c8e7a5f1b3d9e2c4a6b8d0f2e4c6a8b1d3f5e7a9c2b4d6f8e0a"

	// APIVersion1 is the first control-plane API: bridge.proto v1.
	APIVersion1 = "v1"
)

// Handshake is the go-plugin handshake shared by agentd and every bridge.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   MagicCookieKey,
	MagicCookieValue: MagicCookieValue,
}

// APIVersions are the control-plane API versions this SDK speaks, most
// preferred first. A bridge built with this SDK reports them in Info; agentd
// built with it picks from them.
var APIVersions = []string{APIVersion1}

// NegotiateAPIVersion returns the first of ours (most preferred first) that
// the plugin also supports.
func NegotiateAPIVersion(ours, theirs []string) (string, error) {
	for _, v := range ours {
		if slices.Contains(theirs, v) {
			return v, nil
		}
	}
	return "", fmt.Errorf("no common bridge API version: agentd speaks %s, the plugin speaks %s",
		listOrNone(ours), listOrNone(theirs))
}

func listOrNone(vs []string) string {
	if len(vs) == 0 {
		return "none"
	}
	return strings.Join(vs, ", ")
}
