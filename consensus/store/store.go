package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// Key layout. Log keys are prefixLog + big-endian index, so Badger's key order
// is index order; stable keys are prefixStable + the raft key; the marker key
// identifies a directory as this store and carries its format version.
var (
	prefixLog    = []byte("l/")
	prefixStable = []byte("s/")
	markerKey    = []byte("vigil/raft-store")
	markerValue  = []byte("vigil raft log+stable store v1")
)

// Compile-time interface assertions.
var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// Store is a raft.LogStore and raft.StableStore on one Badger v4 database with
// SyncWrites always on: every write method returns only after its data is
// fsynced. Safe for concurrent use.
type Store struct {
	dir string
	db  *badger.DB

	// mu guards db against Close: methods hold it shared, Close exclusively.
	mu     sync.RWMutex
	closed bool

	// wmu serialises log mutations so the cached first/last indexes always
	// describe what is on disk once a mutation returns.
	wmu   sync.Mutex
	first atomic.Uint64 // lowest stored log index, 0 when empty
	last  atomic.Uint64 // highest stored log index, 0 when empty
}

// Open opens the store in dir, creating dir (mode 0700) and the database if
// absent. A directory holding anything else (a foreign Badger database, other
// files) is ErrForeignDir; a database Badger cannot open is Badger's error
// wrapped with the directory name. Open never deletes or rewrites existing data.
func Open(dir string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	bo := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(slogBadger{opts.Logger.With("component", "badger", "dir", dir)}).
		WithLoggingLevel(badger.WARNING).
		WithMemTableSize(opts.MemTableSize).
		WithNumMemtables(opts.NumMemtables).
		WithBlockCacheSize(opts.BlockCacheSize).
		WithValueLogFileSize(opts.ValueLogFileSize).
		WithValueThreshold(opts.ValueThreshold).
		WithNumCompactors(opts.NumCompactors).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithMetricsEnabled(false)
	db, err := badger.Open(bo)
	if err != nil {
		// Badger has no sentinel for its directory lock; it wraps flock's EWOULDBLOCK.
		if errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("store: %s: %w (is a vigil node or vigil dev already running on it?)", dir, ErrInUse)
		}
		return nil, fmt.Errorf("store: open badger database in %s: %w", dir, err)
	}
	s := &Store{dir: dir, db: db}
	if err := s.checkMarker(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.loadIndexes(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// markerFile is written (and fsynced) into an empty directory before Badger
// creates anything there, so Open can refuse a foreign directory, including a
// foreign Badger database, without letting Badger touch it.
const markerFile = "VIGIL-RAFT-STORE"

// checkDir creates dir if needed and prepares it for Badger: an empty directory
// gets the marker file; a non-empty one must already hold it.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("store: create %s: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("store: stat %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("store: %s is not a directory: %w", dir, ErrForeignDir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("store: read %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return writeMarkerFile(dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, markerFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("store: %s holds %d entries but no %s marker: %w", dir, len(entries), markerFile, ErrForeignDir)
	case err != nil:
		return fmt.Errorf("store: read marker in %s: %w", dir, err)
	case string(b) != string(markerValue)+"\n":
		return fmt.Errorf("store: %s: marker file holds %.64q: %w", dir, b, ErrFormat)
	}
	return nil
}

// writeMarkerFile creates the marker file and fsyncs it and the directory.
func writeMarkerFile(dir string) error {
	p := filepath.Join(dir, markerFile)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", p, err)
	}
	_, err = f.Write(append(markerValue, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("store: write %s: %w", p, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkMarker verifies the format marker key, writing it into a database that
// holds no keys at all (a fresh directory, or a first Open that crashed before
// the key was written). A database with keys but no marker key is foreign.
func (s *Store) checkMarker() error {
	var val []byte
	var anyKey bool
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(markerKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
			defer it.Close()
			it.Rewind()
			anyKey = it.Valid()
			return nil
		}
		if err != nil {
			return err
		}
		if item.ValueSize() > int64(len(markerValue))*4 {
			return fmt.Errorf("marker of %d bytes: %w", item.ValueSize(), ErrFormat)
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("store: %s: read format marker: %w", s.dir, err)
	case val != nil && string(val) != string(markerValue):
		return fmt.Errorf("store: %s: format marker %q: %w", s.dir, val, ErrFormat)
	case val != nil:
		return nil
	case anyKey:
		return fmt.Errorf("store: %s: Badger database without format marker: %w", s.dir, ErrForeignDir)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(markerKey, markerValue) }); err != nil {
		return fmt.Errorf("store: %s: write format marker: %w", s.dir, err)
	}
	return nil
}

// Close closes the database. It is idempotent; later calls return nil and every
// other method returns ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.dir, err)
	}
	return nil
}

// begin takes the shared lock; callers must call s.mu.RUnlock when err is nil.
func (s *Store) begin() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return fmt.Errorf("store: %s: %w", s.dir, ErrClosed)
	}
	return nil
}

func logKey(index uint64) []byte {
	k := make([]byte, len(prefixLog)+8)
	copy(k, prefixLog)
	binary.BigEndian.PutUint64(k[len(prefixLog):], index)
	return k
}

func stableKey(key []byte) []byte {
	k := make([]byte, 0, len(prefixStable)+len(key))
	return append(append(k, prefixStable...), key...)
}
