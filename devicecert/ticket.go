package devicecert

import (
	"bytes"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// TicketPrefix starts every invitation ticket; the digit is the format
// version.
const TicketPrefix = "oa1"

// MaxTicketLen bounds a ticket string so parsing stays cheap.
const MaxTicketLen = 4096

// Ticket is an invitation: who to dial (NodeID, Addrs, Relay), which network
// it joins, the one-time code to redeem and the role it grants.
type Ticket struct {
	V         uint64   `cbor:"v"`
	Code      string   `cbor:"code"`
	NodeID    string   `cbor:"node_id"` // the coordinator's iroh NodeId, hex
	Name      string   `cbor:"name"`    // the agent's name, shown to the user
	NetworkID string   `cbor:"network_id"`
	Role      string   `cbor:"role"`    // chat or admin
	Expires   int64    `cbor:"expires"` // Unix seconds
	Addrs     []string `cbor:"addrs,omitempty"`
	Relay     string   `cbor:"relay,omitempty"`
}

// TicketVersion is the only ticket payload version this package knows.
const TicketVersion = 1

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func (t *Ticket) check() error {
	switch {
	case t.V != TicketVersion:
		return fmt.Errorf("unknown ticket version %d", t.V)
	case t.Code == "":
		return errors.New("ticket has no code")
	case t.NodeID == "":
		return errors.New("ticket has no node_id")
	case t.NetworkID == "":
		return errors.New("ticket has no network_id")
	case t.Role == "":
		return errors.New("ticket has no role")
	case t.Expires <= 0:
		return errors.New("ticket has no expiry")
	}
	return nil
}

// EncodeTicket returns "oa1" + lowercase unpadded base32 of the ticket's
// canonical CBOR. A zero V is taken as TicketVersion.
func EncodeTicket(t Ticket) (string, error) {
	if t.V == 0 {
		t.V = TicketVersion
	}
	if err := t.check(); err != nil {
		return "", fmt.Errorf("encode ticket: %w", err)
	}
	b, err := encMode.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encode ticket: %w", err)
	}
	s := TicketPrefix + strings.ToLower(b32.EncodeToString(b))
	if len(s) > MaxTicketLen {
		return "", fmt.Errorf("encode ticket: %d characters, limit %d", len(s), MaxTicketLen)
	}
	return s, nil
}

// ParseTicket decodes a ticket strictly: the prefix, lowercase canonical
// base32, canonical CBOR with no unknown fields, all required fields. It
// does not check expiry; the coordinator does when the code is redeemed.
func ParseTicket(s string) (*Ticket, error) {
	if len(s) > MaxTicketLen {
		return nil, fmt.Errorf("parse ticket: %d characters, limit %d", len(s), MaxTicketLen)
	}
	body, ok := strings.CutPrefix(s, TicketPrefix)
	if !ok {
		return nil, fmt.Errorf("parse ticket: does not start with %q", TicketPrefix)
	}
	if body != strings.ToLower(body) {
		return nil, errors.New("parse ticket: base32 must be lowercase")
	}
	raw, err := b32.DecodeString(strings.ToUpper(body))
	if err != nil {
		return nil, fmt.Errorf("parse ticket: %w", err)
	}
	// Base32 leaves spare bits in the last character; re-encoding refuses
	// a second spelling of the same bytes.
	if strings.ToLower(b32.EncodeToString(raw)) != body {
		return nil, errors.New("parse ticket: non-canonical base32")
	}
	var t Ticket
	if err := strictDec.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("parse ticket: %w", err)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("parse ticket: %w", err)
	}
	again, err := encMode.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("parse ticket: %w", err)
	}
	if !bytes.Equal(again, raw) {
		return nil, errors.New("parse ticket: non-canonical CBOR")
	}
	return &t, nil
}
