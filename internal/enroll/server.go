package enroll

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/devicecert"
	"github.com/agentd/agentd/internal/coordinator"
)

// writeTimeout bounds writing one answer.
const writeTimeout = 10 * time.Second

// maxCode bounds an invitation code in a request.
const maxCode = 256

// Coordinator is what the server needs from the network's coordinator;
// *coordinator.Coordinator implements it.
type Coordinator interface {
	Redeem(ctx context.Context, code string, devicePub ed25519.PublicKey, label string) ([]byte, error)
	Renew(ctx context.Context, certWire []byte) ([]byte, error)
	NetworkID() string
	AgentName() string
}

// NodeIDer is implemented by iroh streams (*iroh.Conn): the peer's NodeId as
// authenticated by iroh's TLS.
type NodeIDer interface{ RemoteNodeID() string }

// Server answers the coordinator RPC on iroh streams.
type Server struct {
	coord  Coordinator
	nodeID string
	log    *slog.Logger
	// Now is the clock used for the certificate expiry pre-check; default time.Now.
	Now func() time.Time

	wg sync.WaitGroup // wg counts the streams Serve is serving
}

// NewServer returns a server for coord. nodeID is this agent's own iroh
// NodeId (hex), reported by network_info.
func NewServer(coord Coordinator, nodeID string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{coord: coord, nodeID: strings.ToLower(nodeID), log: log.With("component", "coordinator-rpc"), Now: time.Now}
}

// Serve accepts streams from ln (the coordinator-ALPN streams of the iroh
// listener) and serves each one until ctx ends or ln fails; it then closes
// ln and waits for the streams in flight.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer s.wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("coordinator rpc: accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.ServeConn(ctx, c)
		}()
	}
}

// ServeConn serves one stream and closes it; it returns when the peer is
// done, the stream idles for IdleTimeout, or ctx ends. c must carry the
// peer's authenticated NodeId (RemoteNodeID); requests on any other stream
// are refused with CodeForbidden.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()

	remote := ""
	if n, ok := c.(NodeIDer); ok {
		remote = strings.ToLower(n.RemoteNodeID())
	}
	log := s.log.With("remote_node_id", remote)
	for i := 0; i < MaxRequestsPerStream; i++ {
		_ = c.SetReadDeadline(time.Now().Add(IdleTimeout))
		b, err := readFrame(c)
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				log.Warn("coordinator rpc: dropping stream", "err", err)
				if errors.Is(err, errTooLarge) {
					s.reply(c, response{Error: &Error{Code: CodeBadRequest, Message: err.Error()}})
				}
			}
			return
		}
		var req request
		if err := decMode.Unmarshal(b, &req); err != nil {
			s.reply(c, response{Error: &Error{Code: CodeBadRequest, Message: "undecodable request: " + err.Error()}})
			return
		}
		resp := response{ID: req.ID}
		if len(remote) != 64 {
			resp.Error = &Error{Code: CodeForbidden, Message: "the stream carries no authenticated iroh NodeId"}
		} else {
			resp.Result, resp.Error = s.call(ctx, log, remote, req)
		}
		if !s.reply(c, resp) {
			return
		}
	}
}

func (s *Server) reply(c net.Conn, r response) bool {
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := writeFrame(c, r); err != nil {
		s.log.Debug("coordinator rpc: write answer", "err", err)
		return false
	}
	return true
}

func (s *Server) call(ctx context.Context, log *slog.Logger, remote string, req request) ([]byte, *Error) {
	var (
		result any
		rerr   *Error
	)
	switch req.Method {
	case MethodRedeem:
		var p RedeemParams
		if rerr = decodeParams(req.Params, &p); rerr == nil {
			result, rerr = s.redeem(ctx, log, remote, p)
		}
	case MethodRenew:
		var p RenewParams
		if rerr = decodeParams(req.Params, &p); rerr == nil {
			result, rerr = s.renew(ctx, log, remote, p)
		}
	case MethodNetworkInfo:
		result = NetworkInfo{Name: s.coord.AgentName(), NetworkID: s.coord.NetworkID(), NodeID: s.nodeID}
	default:
		rerr = &Error{Code: CodeUnknown, Message: fmt.Sprintf("unknown method %q (want %s, %s or %s)", req.Method, MethodRedeem, MethodRenew, MethodNetworkInfo)}
	}
	if rerr != nil {
		return nil, rerr
	}
	b, err := encMode.Marshal(result)
	if err != nil {
		return nil, &Error{Code: CodeRefused, Message: "encode result: " + err.Error()}
	}
	return b, nil
}

func decodeParams(raw []byte, v any) *Error {
	if len(raw) == 0 {
		return &Error{Code: CodeBadRequest, Message: "missing params"}
	}
	if err := decMode.Unmarshal(raw, v); err != nil {
		return &Error{Code: CodeBadRequest, Message: "bad params: " + err.Error()}
	}
	return nil
}

func (s *Server) redeem(ctx context.Context, log *slog.Logger, remote string, p RedeemParams) (any, *Error) {
	switch {
	case p.Code == "" || len(p.Code) > maxCode:
		return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("code must be 1 to %d characters", maxCode)}
	case len(p.DevicePubkey) != ed25519.PublicKeySize:
		return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("device_pubkey is %d bytes, want %d", len(p.DevicePubkey), ed25519.PublicKeySize)}
	case len(p.Label) > MaxLabel:
		return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("label longer than %d bytes", MaxLabel)}
	}
	if pk := hex.EncodeToString(p.DevicePubkey); pk != remote {
		log.Warn("coordinator rpc: redeem refused: device key is not the stream's NodeId", "device_pubkey", pk)
		return nil, &Error{Code: CodeForbidden, Message: "device_pubkey must equal the iroh NodeId of the stream (the device must dial with its own key)"}
	}
	wire, err := s.coord.Redeem(ctx, p.Code, ed25519.PublicKey(p.DevicePubkey), p.Label)
	if err != nil {
		e := coordError(err)
		log.Warn("coordinator rpc: redeem refused", "code", e.Code, "err", err)
		return nil, e
	}
	log.Info("device enrolled over iroh", "client_id", remote, "label", p.Label)
	return CertResult{Cert: wire}, nil
}

func (s *Server) renew(ctx context.Context, log *slog.Logger, remote string, p RenewParams) (any, *Error) {
	cert, err := devicecert.Parse(p.Cert)
	if err != nil {
		return nil, &Error{Code: CodeBadRequest, Message: "certificate: " + err.Error()}
	}
	if cert.ClientID() != remote {
		log.Warn("coordinator rpc: renew refused: certificate of another device", "cert_client_id", cert.ClientID())
		return nil, &Error{Code: CodeForbidden, Message: "a device may only renew its own certificate (the cert's device_pubkey must equal the stream's NodeId)"}
	}
	if !s.Now().Before(cert.ExpiresAt) {
		return nil, &Error{Code: CodeExpired, Message: fmt.Sprintf("certificate expired at %s; enroll again with a new invitation", cert.ExpiresAt.Format(time.RFC3339))}
	}
	wire, err := s.coord.Renew(ctx, p.Cert)
	if err != nil {
		e := coordError(err)
		log.Warn("coordinator rpc: renew refused", "code", e.Code, "err", err)
		return nil, e
	}
	log.Info("device certificate renewed over iroh", "client_id", remote)
	return CertResult{Cert: wire}, nil
}

// coordError maps the coordinator's errors onto RPC codes.
func coordError(err error) *Error {
	code := CodeRefused
	switch {
	case errors.Is(err, coordinator.ErrInviteUnknown):
		code = CodeInvalidCode
	case errors.Is(err, coordinator.ErrInviteExpired):
		code = CodeExpired
	case errors.Is(err, coordinator.ErrInviteUsed):
		code = CodeUsed
	case errors.Is(err, coordinator.ErrRevoked):
		code = CodeRevoked
	case errors.Is(err, coordinator.ErrNotDue):
		code = CodeNotDue
	case errors.Is(err, devicecert.ErrSignature), errors.Is(err, devicecert.ErrMalformed),
		errors.Is(err, devicecert.ErrVersion), errors.Is(err, devicecert.ErrNonCanonical), errors.Is(err, devicecert.ErrTooLarge):
		code = CodeBadRequest
	}
	return &Error{Code: code, Message: err.Error()}
}
