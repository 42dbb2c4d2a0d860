package store

import (
	"fmt"
	"log/slog"
)

// Options tunes the Badger database under a Store. Every zero field takes its
// default from DefaultOptions, so Options{Logger: l} is a complete value.
//
// The defaults are sized for an edge node, where the Raft log is small (entries
// are signed commands of a few hundred bytes, compacted after each snapshot)
// and memory is scarce. Badger's own defaults (64 MiB memtables × 5, 256 MiB
// block cache, 1 GiB value-log files) reserve ~600 MiB of address space for a
// store that rarely holds more than a few MiB. BenchmarkOptions* in
// bench_test.go compares both profiles; the fsync dominates either way.
//
// SyncWrites is deliberately not an option: it is always on, so nothing the
// store acknowledges is lost in a crash or a power cut.
type Options struct {
	// Logger receives Badger's warnings and errors (info and debug are
	// dropped). nil means slog.Default().
	Logger *slog.Logger

	// MemTableSize is the size of one Badger memtable, in bytes. Default 8 MiB
	// (Badger: 64 MiB). One transaction may hold at most 15% of it, so it also
	// bounds a StoreLogs batch before the store splits it (see StoreLogs).
	MemTableSize int64

	// NumMemtables is how many memtables may be held in memory before writes
	// stall. Default 2 (Badger: 5).
	NumMemtables int

	// BlockCacheSize is the size of the cache of decompressed SST blocks, in
	// bytes. Default 8 MiB (Badger: 256 MiB). Hot log reads come from the
	// memtable anyway.
	BlockCacheSize int64

	// ValueLogFileSize is the size at which Badger starts a new value-log file,
	// in bytes. Default 64 MiB (Badger: 1 GiB). Must exceed MaxLogEntrySize.
	ValueLogFileSize int64

	// ValueThreshold is the value size, in bytes, above which Badger stores a
	// value in the value log instead of the LSM tree. Default 64 KiB (Badger:
	// 1 MiB). Must be at most 15% of MemTableSize.
	ValueThreshold int64

	// NumCompactors is the number of Badger compaction goroutines. Default 2,
	// Badger's minimum.
	NumCompactors int
}

// DefaultOptions returns the edge-node profile described on Options.
func DefaultOptions() Options {
	return Options{
		Logger:           nil,
		MemTableSize:     8 << 20,
		NumMemtables:     2,
		BlockCacheSize:   8 << 20,
		ValueLogFileSize: 64 << 20,
		ValueThreshold:   64 << 10,
		NumCompactors:    2,
	}
}

// withDefaults fills every zero field from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = d.MemTableSize
	}
	if o.NumMemtables == 0 {
		o.NumMemtables = d.NumMemtables
	}
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = d.BlockCacheSize
	}
	if o.ValueLogFileSize == 0 {
		o.ValueLogFileSize = d.ValueLogFileSize
	}
	if o.ValueThreshold == 0 {
		o.ValueThreshold = d.ValueThreshold
	}
	if o.NumCompactors == 0 {
		o.NumCompactors = d.NumCompactors
	}
	return o
}

// Validate checks the options after defaults are applied (zero fields are
// valid: they mean "default").
func (o Options) Validate() error {
	o = o.withDefaults()
	bad := func(field, why string) error {
		return fmt.Errorf("store: %w: %s %s", ErrInvalidOptions, field, why)
	}
	switch {
	case o.MemTableSize < 1<<20:
		return bad("MemTableSize", "must be at least 1 MiB")
	case o.NumMemtables < 1:
		return bad("NumMemtables", "must be at least 1")
	case o.BlockCacheSize < 0:
		return bad("BlockCacheSize", "must not be negative")
	case o.ValueLogFileSize <= MaxLogEntrySize || o.ValueLogFileSize >= 2<<30:
		return bad("ValueLogFileSize", fmt.Sprintf("must be above MaxLogEntrySize (%d) and below 2 GiB", MaxLogEntrySize))
	case o.ValueThreshold < 1 || o.ValueThreshold > o.MemTableSize*15/100:
		return bad("ValueThreshold", "must be between 1 and 15% of MemTableSize")
	case o.NumCompactors < 2:
		return bad("NumCompactors", "must be at least 2 (Badger's minimum)")
	}
	return nil
}
