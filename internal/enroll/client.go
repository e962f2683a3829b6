package enroll

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/iroh"
)

// DefaultCallTimeout bounds one call when ctx has no sooner deadline.
const DefaultCallTimeout = 30 * time.Second

// Client calls the coordinator RPC over one stream.
type Client struct {
	conn net.Conn

	// mu serialises calls on the stream and guards next and broken.
	mu     sync.Mutex
	next   uint64
	broken error
}

// NewClient wraps an open coordinator-ALPN stream.
func NewClient(c net.Conn) *Client { return &Client{conn: c} }

// Dial opens a coordinator-ALPN stream to addr through d.
func Dial(ctx context.Context, d *iroh.Dialer, addr iroh.NodeAddr) (*Client, error) {
	c, err := d.Dial(ctx, addr, iroh.ALPNCoordinator)
	if err != nil {
		return nil, err
	}
	return NewClient(c), nil
}

// Close closes the stream.
func (c *Client) Close() error { return c.conn.Close() }

// Redeem spends an invitation code for a certificate of devicePub, which
// must be the key the stream was dialled with. It returns the certificate's
// wire bytes.
func (c *Client) Redeem(ctx context.Context, code string, devicePub ed25519.PublicKey, label string) ([]byte, error) {
	var r CertResult
	if err := c.Call(ctx, MethodRedeem, RedeemParams{Code: code, DevicePubkey: devicePub, Label: label}, &r); err != nil {
		return nil, fmt.Errorf("redeem invitation: %w", err)
	}
	if len(r.Cert) == 0 {
		return nil, errors.New("redeem invitation: the coordinator answered without a certificate")
	}
	return r.Cert, nil
}

// Renew exchanges the device's current certificate for a fresh one.
func (c *Client) Renew(ctx context.Context, cert []byte) ([]byte, error) {
	var r CertResult
	if err := c.Call(ctx, MethodRenew, RenewParams{Cert: cert}, &r); err != nil {
		return nil, fmt.Errorf("renew certificate: %w", err)
	}
	if len(r.Cert) == 0 {
		return nil, errors.New("renew certificate: the coordinator answered without a certificate")
	}
	return r.Cert, nil
}

// NetworkInfo asks which agent and network the node serves.
func (c *Client) NetworkInfo(ctx context.Context) (*NetworkInfo, error) {
	var r NetworkInfo
	if err := c.Call(ctx, MethodNetworkInfo, struct{}{}, &r); err != nil {
		return nil, fmt.Errorf("network info: %w", err)
	}
	return &r, nil
}

// Call sends one request and decodes the result into out. An answer with an
// error returns it as *Error. A transport failure breaks the client: later
// calls return the same error.
func (c *Client) Call(ctx context.Context, method string, params, out any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return c.broken
	}
	rawParams, err := encMode.Marshal(params)
	if err != nil {
		return fmt.Errorf("encode params: %w", err)
	}
	c.next++
	id := c.next
	deadline := time.Now().Add(DefaultCallTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	resp, err := c.roundTrip(request{ID: id, Method: method, Params: rawParams})
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		c.broken = fmt.Errorf("coordinator stream: %w", err)
		return c.broken
	}
	_ = c.conn.SetDeadline(time.Time{})
	if resp.Error != nil {
		return resp.Error
	}
	if resp.ID != id {
		c.broken = fmt.Errorf("coordinator stream: answer id %d, want %d", resp.ID, id)
		return c.broken
	}
	if out != nil {
		if err := decMode.Unmarshal(resp.Result, out); err != nil {
			return fmt.Errorf("decode result: %w", err)
		}
	}
	return nil
}

func (c *Client) roundTrip(req request) (*response, error) {
	if err := writeFrame(c.conn, req); err != nil {
		return nil, err
	}
	b, err := readFrame(c.conn)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	var resp response
	if err := decMode.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	return &resp, nil
}
