// Package store is Vigil's durable Raft storage: a raft.LogStore and
// raft.StableStore on one Badger v4 database (DIR/raft/ of a node's data
// directory, DESIGN.md §8).
//
// Usage:
//
//	st, err := store.Open(filepath.Join(dataDir, "raft"), store.Options{Logger: log})
//	if err != nil {
//		return err // a foreign or corrupt directory is an error, never reset
//	}
//	defer st.Close()
//	r, err := raft.NewRaft(conf, fsm, st, st, snapshots, transport)
//
// Invariants:
//   - SyncWrites is always on: StoreLog(s), DeleteRange, Set and SetUint64
//     return only after Badger has fsynced the write, so an acknowledged entry
//     survives a crash or power cut. No option turns this off.
//   - StoreLogs writes a batch in one transaction (split only when it exceeds
//     Badger's transaction limit, and then in order, so a crash keeps a prefix).
//   - Log keys are "l/" + big-endian index (key order is index order), stable
//     keys "s/" + the raft key. First Open writes a marker file
//     (VIGIL-RAFT-STORE, fsynced before Badger creates anything) and a marker
//     key "vigil/raft-store". Open refuses (ErrForeignDir) a non-empty
//     directory without the marker file, before Badger touches it, and a
//     Badger database with keys but no marker key; an unknown marker is
//     ErrFormat. It wraps
//     Badger's error with the directory name when the database is corrupt; it
//     never deletes anything.
//   - FirstIndex and LastIndex are served from a cache that every mutation
//     updates under one lock after its commit, so they cost no IO.
//   - A missing stable key is ErrKeyNotFound, whose text is exactly "not found"
//     (hashicorp/raft compares the string); a missing log index is
//     raft.ErrLogNotFound.
//   - Log entries use the canonical encoding in codec.go (every raft.Log field,
//     AppendedAt and Extensions included); the decoder is strict and checks
//     every length against limits.go before allocating.
//   - Badger's warnings and errors go to the injected slog.Logger; its info and
//     debug output is dropped.
package store
