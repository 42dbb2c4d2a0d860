package store

// Limits on what the store writes and reads back. They are checked on write (so
// the store never acknowledges something it would refuse to read) and on read
// before any allocation sized by bytes from disk.
const (
	// MaxLogDataSize caps raft.Log.Data, in bytes. Vigil's log entries are
	// signed commands of at most a few hundred KiB (a policy document).
	MaxLogDataSize = 16 << 20

	// MaxLogExtensionsSize caps raft.Log.Extensions, in bytes.
	MaxLogExtensionsSize = 1 << 20

	// MaxLogEntrySize caps one encoded log entry, in bytes.
	MaxLogEntrySize = logHeaderSize + MaxLogDataSize + MaxLogExtensionsSize

	// MaxStableKeySize and MaxStableValueSize cap StableStore keys and values,
	// in bytes. Raft stores a term, a vote term and a candidate address.
	MaxStableKeySize   = 1 << 10
	MaxStableValueSize = 64 << 10
)
