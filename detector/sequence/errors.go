package sequence

import "errors"

// Sentinel errors. Every error the package returns wraps one of these under the "sequence:"
// prefix, so callers can use errors.Is.
var (
	// ErrConfig reports an invalid Config field; the message names the field.
	ErrConfig = errors.New("sequence: invalid config")
	// ErrCheckpoint reports a checkpoint that is truncated, corrupt, over a limit or written by
	// a model with a different configuration; the message says which part.
	ErrCheckpoint = errors.New("sequence: bad checkpoint")
	// ErrTooLarge reports training data beyond a configured limit (vocabulary, contexts).
	ErrTooLarge = errors.New("sequence: over limit")
)
