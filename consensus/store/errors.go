package store

import "errors"

// Sentinel errors. Callers match them with errors.Is; the store wraps them as
// fmt.Errorf("store: …: %w", …) with the directory, index or key involved.
var (
	// ErrKeyNotFound is returned by Get and GetUint64 for a stable key that was
	// never set. Its text is exactly "not found" and it is NOT wrapped: hashicorp/raft
	// compares err.Error() == "not found" in NewRaft and when it handles votes, so a
	// prefix would break elections (PITFALLS.md).
	ErrKeyNotFound = errors.New("not found")

	// ErrForeignDir means Open found a directory that holds something other than
	// this store: files that are not a Badger database, or a Badger database
	// without this store's format marker. The directory is left untouched.
	ErrForeignDir = errors.New("directory holds something that is not a vigil raft store")

	// ErrFormat means the directory holds a vigil raft store of a format version
	// this build does not understand.
	ErrFormat = errors.New("unsupported store format")

	// ErrCorrupt means a record read back from disk failed validation (bad
	// encoding, wrong length, an index that does not match its key).
	ErrCorrupt = errors.New("corrupt record")

	// ErrMalformedLog is returned by the log entry decoder for bytes that are not
	// a canonical encoding of a raft.Log.
	ErrMalformedLog = errors.New("malformed log entry")

	// ErrTooLarge means a log entry, stable key or stable value exceeds the
	// limits in limits.go (checked on write and before allocating on read).
	ErrTooLarge = errors.New("too large")

	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store closed")

	// ErrInUse means another process holds the directory's lock: a running node, or a second
	// vigil dev on the same folder.
	ErrInUse = errors.New("directory is in use by another process")

	// ErrInvalidOptions wraps an Options.Validate failure; the message names the field.
	ErrInvalidOptions = errors.New("invalid options")
)
