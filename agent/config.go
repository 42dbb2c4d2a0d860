package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/vigil-mesh/vigil/identity"
)

// Config configures a Client.
type Config struct {
	Key          identity.PrivateKey // the agent's key (role agent)
	Nodes        []string            // node multiaddrs with /p2p/<peer ID>; tried in order, then round robin
	Security     string              // "tls" (default) or "noise": must match the node's auth.method
	ReconnectMin time.Duration       // first retry delay, default 100ms
	ReconnectMax time.Duration       // backoff cap, default 30s
	Logger       *slog.Logger        // default: discard
}

// DefaultConfig returns a Config with the defaults above and no key or nodes.
func DefaultConfig() Config {
	return Config{Security: "tls", ReconnectMin: 100 * time.Millisecond, ReconnectMax: 30 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// Validate checks the key, every node address and the durations; the error names the field.
func (c Config) Validate() error {
	if c.Key.IsZero() {
		return fmt.Errorf("agent: config: key: not set: %w", ErrInvalidConfig)
	}
	if len(c.Nodes) == 0 {
		return fmt.Errorf("agent: config: nodes: at least one node address is needed: %w", ErrInvalidConfig)
	}
	if _, err := parseNodes(c.Nodes); err != nil {
		return err
	}
	switch c.Security {
	case "", "tls", "noise":
	default:
		return fmt.Errorf("agent: config: security: %q is not tls or noise: %w", c.Security, ErrInvalidConfig)
	}
	if c.ReconnectMin <= 0 {
		return fmt.Errorf("agent: config: reconnect_min: must be > 0, got %s: %w", c.ReconnectMin, ErrInvalidConfig)
	}
	if c.ReconnectMax < c.ReconnectMin {
		return fmt.Errorf("agent: config: reconnect_max: %s is below reconnect_min %s: %w", c.ReconnectMax, c.ReconnectMin, ErrInvalidConfig)
	}
	return nil
}

func parseNodes(addrs []string) ([]peer.AddrInfo, error) {
	out := make([]peer.AddrInfo, 0, len(addrs))
	for i, a := range addrs {
		ma, err := multiaddr.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("agent: config: nodes[%d] %q: %v: %w", i, a, err, ErrInvalidConfig)
		}
		ai, err := peer.AddrInfoFromP2pAddr(ma)
		if err != nil {
			return nil, fmt.Errorf("agent: config: nodes[%d] %q: needs /p2p/<node peer ID>: %v: %w", i, a, err, ErrInvalidConfig)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// LoadOrCreateKey loads the agent key at path, or, when no file is there, generates one and
// writes it there (PEM "VIGIL AGENT KEY", mode 0600, as `vigil keygen --role agent` does). A file
// with group or other permissions, or of another role, is an error.
func LoadOrCreateKey(path string) (identity.PrivateKey, error) {
	k, err := identity.LoadKeyFile(path, identity.RoleAgent)
	if err == nil {
		return k, nil
	}
	if _, serr := os.Stat(path); !errors.Is(serr, fs.ErrNotExist) {
		return identity.PrivateKey{}, fmt.Errorf("agent: %w", err)
	}
	if k, err = identity.GenerateKey(rand.Reader); err != nil {
		return identity.PrivateKey{}, fmt.Errorf("agent: generate key: %w", err)
	}
	if err := identity.WriteKeyFile(path, identity.RoleAgent, k); err != nil {
		return identity.PrivateKey{}, fmt.Errorf("agent: %w", err)
	}
	return k, nil
}
