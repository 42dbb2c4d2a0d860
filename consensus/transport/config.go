package transport

import (
	"fmt"
	"log/slog"
	"time"
)

// Config configures NewTransport.
type Config struct {
	// MaxPool is the number of idle outbound connections (libp2p streams) raft keeps per peer.
	// Default 3. Must be >= 1.
	MaxPool int
	// Timeout bounds a Dial (connect + open stream) and each raft RPC's I/O (raft scales it for
	// snapshots). Default 2 s. Must be > 0.
	Timeout time.Duration
	// Logger receives the stream layer's logs and raft's network-transport logs (adapted to
	// hclog). nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns MaxPool 3, Timeout 2 s and no logger.
func DefaultConfig() Config {
	return Config{MaxPool: 3, Timeout: 2 * time.Second}
}

// Validate checks the fields; the error wraps ErrInvalidConfig and names the field.
func (c Config) Validate() error {
	if c.MaxPool < 1 {
		return fmt.Errorf("transport: MaxPool %d: must be >= 1: %w", c.MaxPool, ErrInvalidConfig)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("transport: Timeout %s: must be > 0: %w", c.Timeout, ErrInvalidConfig)
	}
	return nil
}
