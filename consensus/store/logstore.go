package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// FirstIndex returns the lowest stored log index, 0 when the log is empty. It
// reads a cache kept in step with every mutation, so it does no IO.
func (s *Store) FirstIndex() (uint64, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	return s.first.Load(), nil
}

// LastIndex returns the highest stored log index, 0 when the log is empty. Like
// FirstIndex it reads the cache.
func (s *Store) LastIndex() (uint64, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	return s.last.Load(), nil
}

// GetLog reads the entry at index into log. A missing index is
// raft.ErrLogNotFound (unwrapped: raft compares it with ==).
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(logKey(index))
		if err != nil {
			return err
		}
		if item.ValueSize() > MaxLogEntrySize {
			return fmt.Errorf("%d bytes: %w", item.ValueSize(), ErrTooLarge)
		}
		return item.Value(func(v []byte) error { return DecodeLog(v, log) })
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return raft.ErrLogNotFound
	case err != nil:
		return fmt.Errorf("store: %s: get log %d: %w: %w", s.dir, index, ErrCorrupt, err)
	case log.Index != index:
		return fmt.Errorf("store: %s: key %d holds log %d: %w", s.dir, index, log.Index, ErrCorrupt)
	}
	return nil
}

// StoreLog stores one entry; see StoreLogs.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores the entries in one Badger transaction and returns after it is
// fsynced. An entry at an existing index replaces it. A batch larger than one
// transaction (15% of MemTableSize) is split into consecutive transactions in
// slice order; a crash between them keeps a prefix of the batch, which raft
// handles like a partial append. Entries over the size caps are refused
// (ErrTooLarge) before anything is written.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.mu.RUnlock()

	vals := make([][]byte, len(logs))
	lo, hi := logs[0].Index, logs[0].Index
	for i, l := range logs {
		v, err := EncodeLog(l)
		if err != nil {
			return err
		}
		vals[i] = v
		lo, hi = min(lo, l.Index), max(hi, l.Index)
	}

	s.wmu.Lock()
	defer s.wmu.Unlock()
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for i, l := range logs {
		e := badger.NewEntry(logKey(l.Index), vals[i])
		err := txn.SetEntry(e)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err = txn.Commit(); err != nil {
				return fmt.Errorf("store: %s: store logs: %w", s.dir, err)
			}
			txn = s.db.NewTransaction(true)
			err = txn.SetEntry(e)
		}
		if err != nil {
			return fmt.Errorf("store: %s: store log %d: %w", s.dir, l.Index, err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("store: %s: store logs: %w", s.dir, err)
	}
	if f := s.first.Load(); f == 0 || lo < f {
		s.first.Store(lo)
	}
	if hi > s.last.Load() {
		s.last.Store(hi)
	}
	return nil
}

// DeleteRange deletes the entries with min <= index <= max (inclusive). It is one
// transaction when it fits; a larger range is deleted in several, ordered so
// that a crash part-way leaves the remaining log contiguous: from the front when
// the range keeps the tail (compaction), from the back when it reaches the last
// entry (truncating a conflicting suffix).
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()

	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefixLog})
		defer it.Close()
		for it.Seek(logKey(min)); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if binary.BigEndian.Uint64(k[len(prefixLog):]) > max {
				break
			}
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: %s: delete range %d-%d: %w", s.dir, min, max, err)
	}
	if max >= s.last.Load() {
		slices.Reverse(keys)
	}
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, k := range keys {
		err := txn.Delete(k)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err = txn.Commit(); err != nil {
				break
			}
			txn = s.db.NewTransaction(true)
			err = txn.Delete(k)
		}
		if err != nil {
			return s.deleteFailed(min, max, err)
		}
	}
	if err := txn.Commit(); err != nil {
		return s.deleteFailed(min, max, err)
	}
	if err := s.loadIndexesLocked(); err != nil {
		return fmt.Errorf("store: %s: delete range %d-%d: %w", s.dir, min, max, err)
	}
	return nil
}

// deleteFailed reloads the cached indexes (part of the range may be gone) and
// wraps err.
func (s *Store) deleteFailed(min, max uint64, err error) error {
	if lerr := s.loadIndexesLocked(); lerr != nil {
		err = errors.Join(err, lerr)
	}
	return fmt.Errorf("store: %s: delete range %d-%d: %w", s.dir, min, max, err)
}

// loadIndexes fills the first/last cache from disk (at Open).
func (s *Store) loadIndexes() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.loadIndexesLocked(); err != nil {
		return fmt.Errorf("store: %s: read log bounds: %w", s.dir, err)
	}
	return nil
}

// loadIndexesLocked seeks to the lowest and highest log keys; wmu must be held.
func (s *Store) loadIndexesLocked() error {
	var first, last uint64
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if first, err = edgeIndex(txn, false); err != nil {
			return err
		}
		last, err = edgeIndex(txn, true)
		return err
	})
	if err != nil {
		return err
	}
	s.first.Store(first)
	s.last.Store(last)
	return nil
}

// edgeIndex returns the lowest (or, reverse, highest) log index, 0 if none.
func edgeIndex(txn *badger.Txn, reverse bool) (uint64, error) {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Reverse: reverse, Prefix: prefixLog})
	defer it.Close()
	seek := logKey(0)
	if reverse {
		seek = logKey(^uint64(0))
	}
	it.Seek(seek)
	if !it.Valid() {
		return 0, nil
	}
	k := it.Item().Key()
	if len(k) != len(prefixLog)+8 {
		return 0, fmt.Errorf("log key of %d bytes: %w", len(k), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(k[len(prefixLog):]), nil
}
