package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	bridgev1 "github.com/agentd/agentd/proto/bridge/v1"
)

// PluginName is the bridge's key in go-plugin's plugin set; agentd
// dispenses it by this name.
const PluginName = "bridge"

// GRPCPlugin is the go-plugin glue for the Bridge service. In the plugin
// process Platform is set and GRPCServer serves it; in agentd Platform is
// nil and GRPCClient returns a *Client.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Platform Platform

	srv *server // set by Serve, which owns its lifetime
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the Bridge service for p.Platform.
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Platform == nil {
		return errors.New("bridge plugin: no Platform to serve")
	}
	srv := p.srv
	if srv == nil {
		srv = newServer(p.Platform, nil)
	}
	srv.broker = broker
	bridgev1.RegisterBridgeServer(s, srv)
	return nil
}

// GRPCClient returns agentd's handle on the plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{rpc: bridgev1.NewBridgeClient(c), broker: broker}, nil
}

// PluginSet is the plugin set both sides register.
func PluginSet(p Platform) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Platform: p}}
}

// Client is agentd's side of one bridge plugin's control plane.
type Client struct {
	rpc    bridgev1.BridgeClient
	broker *plugin.GRPCBroker

	// mu guards hostID.
	mu     sync.Mutex
	hostID uint32 // broker stream serving BridgeHost; 0 until served
}

// Dispense returns the bridge control client of a started go-plugin client.
func Dispense(pc *plugin.Client) (*Client, error) {
	rpc, err := pc.Client()
	if err != nil {
		return nil, err
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		return nil, fmt.Errorf("dispense %s: %w", PluginName, err)
	}
	c, ok := raw.(*Client)
	if !ok {
		return nil, fmt.Errorf("dispense %s: got %T, want *bridge.Client", PluginName, raw)
	}
	return c, nil
}

// Info asks the plugin what it is.
func (c *Client) Info(ctx context.Context) (*bridgev1.InfoResponse, error) {
	return c.rpc.Info(ctx, &bridgev1.InfoRequest{})
}

// Configure sends req. If host is not nil it is served to the plugin on a
// broker stream (once per Client; later calls reuse it) and req's
// HostBrokerId is set to that stream.
func (c *Client) Configure(ctx context.Context, req *bridgev1.ConfigureRequest, host bridgev1.BridgeHostServer) error {
	if host != nil {
		req.HostBrokerId = c.serveHost(host)
	}
	_, err := c.rpc.Configure(ctx, req)
	return err
}

// serveHost starts the BridgeHost server on a new broker stream. The server
// lives as long as the broker: go-plugin closes it when the plugin client is
// killed, which ends AcceptAndServe.
func (c *Client) serveHost(host bridgev1.BridgeHostServer) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hostID != 0 {
		return c.hostID
	}
	c.hostID = c.broker.NextId()
	go c.broker.AcceptAndServe(c.hostID, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		bridgev1.RegisterBridgeHostServer(s, host)
		return s
	})
	return c.hostID
}

// Start starts the bridge.
func (c *Client) Start(ctx context.Context) error {
	_, err := c.rpc.Start(ctx, &bridgev1.StartRequest{})
	return err
}

// Stop asks the bridge to stop; the plugin bounds how long it waits.
func (c *Client) Stop(ctx context.Context) error {
	_, err := c.rpc.Stop(ctx, &bridgev1.StopRequest{})
	return err
}

// Health reports the bridge's state.
func (c *Client) Health(ctx context.Context) (*bridgev1.HealthResponse, error) {
	return c.rpc.Health(ctx, &bridgev1.HealthRequest{})
}

// SetAllowedUsers pushes a new allow-list to the bridge; welcomeChat, if
// not empty, is told "You're in.".
func (c *Client) SetAllowedUsers(ctx context.Context, users []string, welcomeChat string) error {
	_, err := c.rpc.SetAllowedUsers(ctx, &bridgev1.SetAllowedUsersRequest{AllowedUsers: users, WelcomeChatId: welcomeChat})
	return err
}
