package consensus

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vigil-mesh/vigil/identity"
)

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
	_ raft.FSMSnapshot = (*fsmSnapshot)(nil)
)

// ApplyResult is the FSM's response to one log entry: its index, and nil or the registry's
// rejection (wrapping an identity sentinel). A rejected command changed nothing.
type ApplyResult struct {
	Index uint64
	Err   error
}

// FSM replicates an identity.Registry. Apply and Restore are called by raft from one goroutine;
// Read, AppliedIndex, Subscribe and WaitApplied are safe from any goroutine.
type FSM struct {
	log *slog.Logger

	mu      sync.RWMutex
	reg     *identity.Registry
	lastNow time.Time // the FSM clock: max over the AppendedAt of applied entries
	// regIndex is the index reg reflects, under mu (applied is published later, after mu).
	regIndex uint64

	applied atomic.Uint64 // index of the last entry the FSM applied (commands and configurations)

	subMu   sync.Mutex
	changed chan struct{} // closed and replaced whenever applied advances
	subs    map[uint64]func(uint64)
	nextSub uint64

	// onMembership is called (from the apply goroutine, must not block) after an applied
	// batch changed the admitted node set or carried a raft configuration, or after a restore.
	onMembership func()

	restores atomic.Uint64 // number of Restore calls, for tests and Stats

	// self is the local node's ID (zero: none). When an applied command or a restored
	// snapshot retires self's key, onSelfRemoved is called (from the apply goroutine, must not
	// block) with the command's index, or 0 after a restore.
	self          identity.ID
	onSelfRemoved func(index uint64)
	// removals holds, under mu, the latest applied remove-node commands by removed node (at most
	// maxRemovals): the leader sends one to its node before taking it out of raft.
	removals map[identity.ID]removalRec
}

// removalRec is an applied remove-node command and its raft index.
type removalRec struct {
	index uint64
	cmd   []byte
}

// NewFSM returns an FSM over an empty registry.
func NewFSM(log *slog.Logger) *FSM {
	if log == nil {
		log = slog.Default()
	}
	return &FSM{
		log:      log,
		reg:      identity.NewRegistry(),
		changed:  make(chan struct{}),
		subs:     map[uint64]func(uint64){},
		removals: map[identity.ID]removalRec{},
	}
}

// Apply applies one entry; see ApplyBatch.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// verified is the outcome of the parallel, state-independent stage of one entry.
type verified struct {
	kind identity.Kind // zero when the entry did not decode
	cmd  *identity.VerifiedCommand
	err  error
}

// ApplyBatch decodes and verifies the command entries in parallel (pure, state-independent work
// on a pool of GOMAXPROCS goroutines that all exit before it returns), then applies them in log
// order under the write lock. Each entry returns an ApplyResult.
//
// Time: the registry is given now = max(previous now, entry.AppendedAt). AppendedAt is stamped
// by the leader when it first appends the entry and is replicated with it, so every replica
// applies the entry with the same now, whatever its own clock says (determinism). The max keeps
// the FSM clock monotonic across leader changes with skewed clocks. Trust: the leader chooses
// the time, but time is only a freshness window and an expiry clock; it can never make a forged,
// unsigned or unauthorised command pass, since signatures and authority are checked on every
// replica. A lying leader can at most make fresh commands look stale (denial of service, seen
// identically everywhere) or expire registrations early, both visible in the audit history.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	ver := f.verifyAll(logs)

	membership := false
	var selfRemoved uint64
	f.mu.Lock()
	for i, l := range logs {
		res := ApplyResult{Index: l.Index}
		if l.AppendedAt.After(f.lastNow) {
			f.lastNow = l.AppendedAt
		}
		if l.Type == raft.LogConfiguration {
			membership = true
		}
		if l.Type == raft.LogCommand {
			res.Err = ver[i].err
			var removing identity.ID // the node a remove-node command names, before it applies
			if res.Err == nil && ver[i].kind == identity.KindRemoveNode {
				removing = f.nodeNamed(ver[i].cmd)
			}
			if res.Err == nil {
				res.Err = f.reg.Apply(ver[i].cmd, f.lastNow)
			}
			if res.Err == nil && !removing.IsZero() {
				f.recordRemoval(removing, l.Index, l.Data)
				if removing == f.self {
					selfRemoved = l.Index
				}
			}
			if res.Err != nil {
				f.log.Warn("consensus: command rejected", "index", l.Index, "kind", ver[i].kind.String(),
					"code", identity.CodeOf(res.Err), "err", res.Err)
			} else {
				switch ver[i].kind {
				case identity.KindGenesis, identity.KindAdmitNode, identity.KindRemoveNode:
					membership = true
				}
			}
		}
		out[i] = res
	}
	if n := len(logs); n > 0 {
		f.regIndex = logs[n-1].Index
	}
	f.mu.Unlock()

	if n := len(logs); n > 0 {
		f.advance(logs[n-1].Index)
	}
	if membership && f.onMembership != nil {
		f.onMembership()
	}
	if selfRemoved != 0 && f.onSelfRemoved != nil {
		f.onSelfRemoved(selfRemoved)
	}
	return out
}

// nodeNamed returns the ID of the node a verified remove-node command names (zero when none),
// under f.mu.
func (f *FSM) nodeNamed(v *identity.VerifiedCommand) identity.ID {
	p, ok := v.Payload().(*identity.RemoveNode)
	if !ok {
		return identity.ID{}
	}
	for _, nd := range f.reg.Nodes() {
		if nd.Name == p.Name {
			return nd.ID
		}
	}
	return identity.ID{}
}

// recordRemoval keeps the command that removed id, dropping the oldest beyond maxRemovals;
// under f.mu.
func (f *FSM) recordRemoval(id identity.ID, index uint64, cmd []byte) {
	f.removals[id] = removalRec{index: index, cmd: bytes.Clone(cmd)}
	for len(f.removals) > maxRemovals {
		var oldest identity.ID
		first := true
		for k, r := range f.removals {
			if first || r.index < f.removals[oldest].index {
				oldest, first = k, false
			}
		}
		delete(f.removals, oldest)
	}
}

// removal returns the applied command that removed id, if this replica holds it.
func (f *FSM) removal(id identity.ID) (removalRec, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, ok := f.removals[id]
	return r, ok
}

// selfRetired reports whether the registry holds self's key as retired (a removed node); under
// f.mu.
func (f *FSM) selfRetired() bool {
	if f.self.IsZero() {
		return false
	}
	_, st, ok := f.reg.Principal(f.self, f.lastNow)
	return !ok && st == identity.StatusRevoked
}

// verifyAll runs decode + Verify on every command entry, in parallel when there is more than one.
func (f *FSM) verifyAll(logs []*raft.Log) []verified {
	ver := make([]verified, len(logs))
	one := func(i int) {
		if logs[i].Type != raft.LogCommand {
			return
		}
		cmd, err := identity.DecodeCommand(logs[i].Data)
		if err != nil {
			ver[i].err = fmt.Errorf("consensus: log %d: %w", logs[i].Index, err)
			return
		}
		ver[i].kind = cmd.Kind
		ver[i].cmd, ver[i].err = cmd.Verify()
	}
	workers := min(runtime.GOMAXPROCS(0), len(logs))
	if workers <= 1 {
		for i := range logs {
			one(i)
		}
		return ver
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(logs) {
					return
				}
				one(i)
			}
		})
	}
	wg.Wait()
	return ver
}

// advance publishes a new applied index to waiters and subscribers.
func (f *FSM) advance(index uint64) {
	f.applied.Store(index)
	f.subMu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	subs := make([]func(uint64), 0, len(f.subs))
	for _, s := range f.subs {
		subs = append(subs, s)
	}
	f.subMu.Unlock()
	for _, s := range subs {
		s(index)
	}
}

// Read runs fn with the registry under the read lock. fn must not keep the pointer nor modify
// the registry.
func (f *FSM) Read(fn func(*identity.Registry)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.reg)
}

// readIndexed is Read that also passes the index the registry reflects.
func (f *FSM) readIndexed(fn func(reg *identity.Registry, index uint64)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.reg, f.regIndex)
}

// AppliedIndex is the raft index of the last entry the FSM applied. Raft's no-op and barrier
// entries never reach the FSM, so it may trail raft's own applied index by such entries.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Changed returns a channel that is closed the next time the applied index advances.
func (f *FSM) Changed() <-chan struct{} {
	f.subMu.Lock()
	defer f.subMu.Unlock()
	return f.changed
}

// Subscribe calls fn with the new applied index after every applied batch and restore, on the
// apply goroutine: fn must return quickly and not call back into raft. cancel removes it.
func (f *FSM) Subscribe(fn func(index uint64)) (cancel func()) {
	f.subMu.Lock()
	defer f.subMu.Unlock()
	id := f.nextSub
	f.nextSub++
	f.subs[id] = fn
	return func() {
		f.subMu.Lock()
		defer f.subMu.Unlock()
		delete(f.subs, id)
	}
}

// snapshotMagic starts every FSM snapshot: format version 1, then the applied index (uint64) and
// the FSM clock (int64 Unix nanoseconds, 0 = zero time), both big-endian, then the registry's
// own snapshot encoding. The clock is part of the replicated state: without it a restored replica
// could apply the next entry with an earlier now than its peers.
var snapshotMagic = [8]byte{'V', 'G', 'L', 'F', 'S', 'M', 0, 1}

const snapshotHeaderLen = 8 + 8 + 8

// Snapshot encodes the state now (on the apply goroutine) so Persist may run concurrently with
// later applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var buf bytes.Buffer
	buf.Write(encodeSnapshotHeader(f.applied.Load(), f.lastNow))
	if err := f.reg.WriteSnapshot(&buf); err != nil {
		return nil, fmt.Errorf("consensus: snapshot: %w", err)
	}
	return &fsmSnapshot{data: buf.Bytes()}, nil
}

func encodeSnapshotHeader(applied uint64, now time.Time) []byte {
	h := make([]byte, snapshotHeaderLen)
	copy(h, snapshotMagic[:])
	binary.BigEndian.PutUint64(h[8:], applied)
	var ns int64
	if !now.IsZero() {
		ns = now.UnixNano()
	}
	binary.BigEndian.PutUint64(h[16:], uint64(ns))
	return h
}

// decodeSnapshot reads an FSM snapshot strictly (the registry decoder enforces its own caps).
func decodeSnapshot(r io.Reader) (applied uint64, now time.Time, reg *identity.Registry, err error) {
	var h [snapshotHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, time.Time{}, nil, errf(ErrProtocol, "snapshot header: %v", err)
	}
	if !bytes.Equal(h[:8], snapshotMagic[:]) {
		return 0, time.Time{}, nil, errf(ErrProtocol, "snapshot: bad magic %x", h[:8])
	}
	applied = binary.BigEndian.Uint64(h[8:])
	if ns := int64(binary.BigEndian.Uint64(h[16:])); ns != 0 {
		now = time.Unix(0, ns).UTC()
	}
	reg, err = identity.ReadSnapshot(r)
	if err != nil {
		return 0, time.Time{}, nil, fmt.Errorf("consensus: snapshot: %w", err)
	}
	return applied, now, reg, nil
}

// Restore replaces the state with a snapshot. On error the state is unchanged.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	applied, now, reg, err := decodeSnapshot(bufio.NewReader(rc))
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.reg, f.lastNow, f.regIndex = reg, now, applied
	retired := f.selfRetired()
	f.mu.Unlock()
	f.restores.Add(1)
	f.advance(applied)
	if f.onMembership != nil {
		f.onMembership()
	}
	if retired && f.onSelfRemoved != nil {
		f.onSelfRemoved(0)
	}
	return nil
}

type fsmSnapshot struct{ data []byte }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("consensus: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
