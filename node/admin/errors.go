package admin

import (
	"errors"
	"fmt"
)

// Sentinel errors of the admin server; test with errors.Is. Errors sent to API callers are
// connect errors (see errmap.go), not these.
var (
	// ErrInvalidConfig: a Config field has a bad value; the message names the field.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrClosed: the server has been closed.
	ErrClosed = errors.New("closed")
	// ErrSocket: the Unix socket path cannot be used (an existing non-socket file, a bad mode).
	ErrSocket = errors.New("unix socket")
)

// errf wraps a sentinel under the package prefix.
func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("admin: %s: %w", fmt.Sprintf(format, args...), sentinel)
}
