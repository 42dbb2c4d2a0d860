package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/adminv1/adminv1connect"
)

// Client is the generated connect client of the admin API.
type Client = adminv1connect.AdminServiceClient

// DefaultTimeout bounds connecting (dial and TLS handshake). Calls are bounded by their ctx.
const DefaultTimeout = 10 * time.Second

// Dial returns a client of the admin API at addr ("host:port") over mutual TLS: the client
// presents a certificate derived from key (the operator's key, or a node's) and accepts only a
// server that proves nodeID. No connection is made until the first call.
func Dial(addr string, nodeID peer.ID, key identity.PrivateKey) (Client, error) {
	if nodeID == "" {
		return nil, fmt.Errorf("client: node id: required (the server's peer ID is pinned)")
	}
	conf, err := admin.TLSConfig(key, nodeID)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	tr := &http.Transport{
		TLSClientConfig:     conf,
		ForceAttemptHTTP2:   true,
		DialContext:         (&net.Dialer{Timeout: DefaultTimeout}).DialContext,
		TLSHandshakeTimeout: DefaultTimeout,
		MaxIdleConns:        4,
		IdleConnTimeout:     90 * time.Second,
	}
	return adminv1connect.NewAdminServiceClient(&http.Client{Transport: tr}, "https://"+addr), nil
}

// DialUnix returns a client of the admin API on the node's Unix socket at path (the caller
// has the local role; the socket's file mode is the access control).
func DialUnix(path string) Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return adminv1connect.NewAdminServiceClient(&http.Client{Transport: tr}, "http://vigil.local")
}

// Code returns the stable Vigil error code of an error from a call: identity.CodeOf's code for
// a registry rejection (e.g. "unauthorized", "not_found"), "consensus.*" for a cluster
// condition, or "" when err carries none.
func Code(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return ""
	}
	for _, d := range ce.Details() {
		if m, derr := d.Value(); derr == nil {
			if ed, ok := m.(*adminv1.ErrorDetail); ok {
				return ed.Code
			}
		}
	}
	return ce.Meta().Get(admin.ErrorCodeHeader)
}

// IdentityError rebuilds the identity sentinel of err (errors.Is works on the result), or nil
// when err carries no identity code.
func IdentityError(err error) error {
	code := Code(err)
	if code == "" || code == "unknown" {
		return nil
	}
	out := identity.ErrorForCode(code, err.Error())
	if identity.CodeOf(out) != code {
		return nil
	}
	return out
}
