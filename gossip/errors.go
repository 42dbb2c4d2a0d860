package gossip

import (
	"errors"
	"fmt"
)

// Sentinel errors; every error of this package wraps one of them (test with errors.Is).
var (
	ErrMalformed     = errors.New("malformed")      // bytes that do not decode
	ErrTooLarge      = errors.New("too large")      // over a size cap, refused before allocation
	ErrBadSignature  = errors.New("bad signature")  // signature does not verify
	ErrNotAdmitted   = errors.New("not admitted")   // signer or member is not an admitted node
	ErrOutOfWindow   = errors.New("outside window") // expired, from the future, or TTL too long
	ErrDuplicate     = errors.New("duplicate")      // (reporter, subject, nonce) already seen
	ErrRateLimited   = errors.New("rate limited")   // reporter over its token bucket
	ErrInvalidConfig = errors.New("invalid config") // Config.Validate
	ErrClosed        = errors.New("mesh closed")    // operation after Close
	ErrMismatch      = errors.New("inner mismatch") // envelope and its signal disagree
)

func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("gossip: %s: %w", fmt.Sprintf(format, args...), sentinel)
}

func configErr(field, format string, args ...any) error {
	return fmt.Errorf("gossip: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalidConfig)
}

func isErr(err, target error) bool { return errors.Is(err, target) }
