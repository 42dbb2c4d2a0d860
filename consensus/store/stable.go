package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Set stores val under key and returns after it is fsynced. The store does not
// keep key or val after it returns.
func (s *Store) Set(key, val []byte) error {
	if len(key) > MaxStableKeySize || len(val) > MaxStableValueSize {
		return fmt.Errorf("store: set %q: key %d / value %d bytes: %w", key, len(key), len(val), ErrTooLarge)
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(stableKey(key), val) }); err != nil {
		return fmt.Errorf("store: %s: set %q: %w", s.dir, key, err)
	}
	return nil
}

// Get returns a copy of the value under key. A key never set returns
// (nil, ErrKeyNotFound), whose text is exactly "not found" as raft requires.
func (s *Store) Get(key []byte) ([]byte, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var val []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(stableKey(key))
		if err != nil {
			return err
		}
		if item.ValueSize() > MaxStableValueSize {
			return fmt.Errorf("value of %d bytes: %w: %w", item.ValueSize(), ErrCorrupt, ErrTooLarge)
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil, ErrKeyNotFound
	case err != nil:
		return nil, fmt.Errorf("store: %s: get %q: %w", s.dir, key, err)
	}
	if val == nil {
		val = []byte{} // a present empty value is distinct from a missing key
	}
	return val, nil
}

// SetUint64 stores val as 8 big-endian bytes under key.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the uint64 under key; a key never set returns
// (0, ErrKeyNotFound). A value that is not 8 bytes is ErrCorrupt.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("store: %s: uint64 %q holds %d bytes: %w", s.dir, key, len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}
