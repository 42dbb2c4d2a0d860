package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/consensus/store"
	"github.com/vigil-mesh/vigil/consensus/transport"
	"github.com/vigil-mesh/vigil/identity"
)

// Node is one replica of the registry: raft, its stores, the FSM, the libp2p protocols
// (/vigil/raft/1, /vigil/join/1, /vigil/propose/1, /vigil/readindex/1, /vigil/removed/1) and the leader's
// membership reconciler. Every method is safe for concurrent use.
type Node struct {
	cfg     Config
	log     *slog.Logger
	h       host.Host
	self    identity.ID
	cluster identity.ClusterID
	// genesisNodes are admitted by the genesis command; they are trusted only until the
	// genesis is applied, after which the registry alone decides.
	genesisNodes map[peer.ID]struct{}

	fsm    *FSM
	raft   *raft.Raft
	logs   raft.LogStore
	trans  raft.Transport
	layer  *transport.StreamLayer // nil when cfg.Transport overrides it
	store  *store.Store           // nil when the stores are overridden
	closer []func() error         // resources to release on Close, in order

	bootMu sync.RWMutex
	boot   map[peer.ID]struct{} // peers learnt by joining; trusted until the registry lists us

	vouchMu   sync.RWMutex
	vouched   map[peer.ID]vouch // peers listed by an admitted node (catchup.go); nil until one
	refreshCh chan peer.ID      // refused unknown peers for the refresh loop (buffered, 1)
	refreshes atomic.Uint64     // refreshes run (Stats)

	// raftRef is raft once NewRaft has returned; the authorizer reads it from transport
	// goroutines that may run before Open finishes.
	raftRef atomic.Pointer[raft.Raft]

	blocked sync.Map // test-only fault hook: peer.ID → struct{}, refused by authorize

	memberCh  chan struct{} // wakes the membership loop (buffered, 1)
	readyTerm atomic.Uint64 // a term in which this leader has committed an entry (barrier)

	genesisRejected atomic.Bool // the registry refused cfg.Genesis: never propose it again

	removed     atomic.Pointer[Removal] // set once this node learns that it was removed (removed.go)
	noticed     sync.Map                // peer.ID → struct{}: removed nodes that acknowledged their removal notice
	raftStopped atomic.Bool             // raft's goroutines ended after a removal
	joinProblem atomic.Pointer[error]   // why the last round of joinLoop failed; nil once joined
	// replayTarget is the last raft log index this node held when it opened: its registry is
	// incomplete until raft has applied up to it (or up to the commit index, when lower).
	replayTarget uint64

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens (or creates) the node's data directory, starts raft and the node's protocols, and
// returns at once; use WaitForLeader to wait for the cluster.
func Open(cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	vg, err := cfg.Genesis.Verify()
	if err != nil {
		return nil, fmt.Errorf("consensus: genesis: %w", err)
	}
	gen, ok := vg.Payload().(*identity.Genesis)
	if !ok || gen.ClusterID != cfg.Genesis.ClusterID {
		return nil, errf(ErrInvalidConfig, "genesis: payload does not match the command's cluster id")
	}
	genesisNodes := map[peer.ID]struct{}{}
	for _, gn := range gen.Nodes {
		genesisNodes[gn.Key.ID().Peer()] = struct{}{}
	}
	if _, listed := genesisNodes[cfg.Host.ID()]; cfg.Bootstrap && !listed {
		return nil, errf(ErrInvalidConfig, "bootstrap: node %s is not a node of the genesis", cfg.Key.ID())
	}
	if err := prepareDataDir(cfg.DataDir, cfg.Genesis.ClusterID, cfg.Key.ID()); err != nil {
		return nil, err
	}
	// A removed node never starts raft again: it would only campaign against nodes that refuse it.
	if r, err := readRemoved(cfg.DataDir); err != nil {
		return nil, err
	} else if r != nil {
		return nil, &RemovedError{Removal: *r}
	}

	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.Key.ID().String()),
		h:        cfg.Host,
		self:     cfg.Key.ID(),
		cluster:  cfg.Genesis.ClusterID,
		boot:     map[peer.ID]struct{}{},
		memberCh: make(chan struct{}, 1),
		// Created before the transport: its authorizer may refuse (and queue) a peer at once.
		refreshCh: make(chan peer.ID, 1),
		ctx:       ctx,
		cancel:    cancel,
	}
	n.genesisNodes = genesisNodes
	defer func() {
		if err != nil {
			cancel()
			n.releaseAll()
		}
	}()

	logs, stable := cfg.LogStore, cfg.StableStore
	// Refuse a member that lost raft/ before opening the store, which would recreate it empty.
	if entries, _ := os.ReadDir(filepath.Join(cfg.DataDir, raftDirName)); logs == nil && len(entries) == 0 && hadRaftState(cfg.DataDir) {
		return nil, lostRaftState(cfg)
	}
	if logs == nil {
		st, err := store.Open(filepath.Join(cfg.DataDir, raftDirName), store.Options{Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("consensus: open raft store: %w", err)
		}
		n.store = st
		n.closer = append(n.closer, st.Close)
		logs, stable = st, st
	}
	n.logs = logs
	snaps := cfg.SnapshotStore
	if snaps == nil {
		fs, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, snapshotsDirName),
			cfg.SnapshotRetain, transport.NewHCLogger(cfg.Logger, "raft-snapshots"))
		if err != nil {
			return nil, fmt.Errorf("consensus: open snapshot store: %w", err)
		}
		snaps = fs
	}

	n.fsm = NewFSM(n.log)
	n.fsm.onMembership = n.wakeMembership
	n.fsm.self, n.fsm.onSelfRemoved = n.self, n.selfRemoved

	n.trans = cfg.Transport
	localAddr := transport.ServerAddress(n.h.ID(), n.h.Addrs())
	if n.trans == nil {
		tc := transport.DefaultConfig()
		tc.Logger = cfg.Logger
		nt, layer, err := transport.NewTransport(n.h, n.authorize, tc)
		if err != nil {
			return nil, fmt.Errorf("consensus: transport: %w", err)
		}
		n.trans, n.layer = nt, layer
		n.closer = append([]func() error{nt.Close}, n.closer...)
	} else {
		localAddr = n.trans.LocalAddr()
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.h.ID().String())
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.Logger = transport.NewHCLogger(cfg.Logger, "raft")
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, errf(ErrInvalidConfig, "raft: %v", err)
	}

	hasState, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return nil, fmt.Errorf("consensus: read raft state: %w", err)
	}
	if !hasState && hadRaftState(cfg.DataDir) {
		return nil, lostRaftState(cfg)
	}
	if hasState {
		if n.replayTarget, err = logs.LastIndex(); err != nil {
			return nil, fmt.Errorf("consensus: read raft log: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, stable, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("consensus: start raft: %w", err)
	}
	n.raft = r
	n.raftRef.Store(r)
	n.closer = append([]func() error{func() error { return r.Shutdown().Error() }}, n.closer...)

	if cfg.Bootstrap && !hasState {
		boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: localAddr}}}
		if err := r.BootstrapCluster(boot).Error(); err != nil {
			return nil, fmt.Errorf("consensus: bootstrap: %w", err)
		}
		hasState = true
	}
	if hasState {
		if err := markRaftState(cfg.DataDir); err != nil {
			return nil, err
		}
	} else {
		// A joining node holds raft state from its first replicated entry on.
		// The subscription stays: after the first call it costs one atomic load.
		var once sync.Once
		n.fsm.Subscribe(func(uint64) {
			once.Do(func() {
				if err := markRaftState(cfg.DataDir); err != nil {
					n.log.Error("consensus: cannot record raft state in data dir", "err", err)
				}
			})
		})
	}

	n.h.SetStreamHandler(JoinProtocol, n.handleJoin)
	n.h.SetStreamHandler(ProposeProtocol, n.handlePropose)
	n.h.SetStreamHandler(ReadIndexProtocol, n.handleReadIndex)
	n.h.SetStreamHandler(RemovedProtocol, n.handleRemoved)

	n.wg.Go(n.membershipLoop)
	n.wg.Go(n.refreshLoop)
	if len(cfg.Join) > 0 && !cfg.Bootstrap && !hasState {
		n.wg.Go(n.joinLoop)
	}
	n.log.Info("consensus: node open", "bootstrap", cfg.Bootstrap && !hasState, "existing_state", hasState,
		"address", string(localAddr))
	return n, nil
}

// lostRaftState is the error for a data dir that was a member but no longer holds raft state.
func lostRaftState(cfg Config) error {
	return errf(ErrDataDir, "data dir %s was a member of cluster %s but its raft state (%s/) is gone; "+
		"starting it again could vote twice in one term or start a second cluster. Restore %s/ from a backup, "+
		"or have an operator remove this node and admit a new one with an empty data dir",
		cfg.DataDir, cfg.Genesis.ClusterID, raftDirName, raftDirName)
}

// releaseAll releases what Open acquired, in order, and returns the joined errors.
func (n *Node) releaseAll() error {
	var errs []error
	for _, c := range n.closer {
		if err := c(); err != nil && !errors.Is(err, raft.ErrRaftShutdown) {
			errs = append(errs, err)
		}
	}
	n.closer = nil
	return errors.Join(errs...)
}

// Close stops the node: protocols, background work, raft, transport and store. Idempotent; the
// host stays open (the caller owns it).
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.h.RemoveStreamHandler(JoinProtocol)
		n.h.RemoveStreamHandler(ProposeProtocol)
		n.h.RemoveStreamHandler(ReadIndexProtocol)
		n.h.RemoveStreamHandler(RemovedProtocol)
		n.cancel()
		// raft first (it resolves every pending future), then our goroutines, which may
		// be waiting on those futures, then transport and store.
		var errs []error
		if len(n.closer) > 0 {
			if err := n.closer[0](); err != nil && !errors.Is(err, raft.ErrRaftShutdown) {
				errs = append(errs, err)
			}
			n.closer = n.closer[1:]
		}
		n.wg.Wait()
		errs = append(errs, n.releaseAll())
		if err := errors.Join(errs...); err != nil {
			n.closeErr = fmt.Errorf("consensus: close: %w", err)
		}
		n.log.Info("consensus: node closed")
	})
	return n.closeErr
}

// Read runs fn on the local registry under the read lock: no network, possibly stale (see
// LastContact). fn must not keep the registry.
func (n *Node) Read(fn func(*identity.Registry)) { n.fsm.Read(fn) }

// AppliedIndex is the index of the last log entry applied to the local registry.
func (n *Node) AppliedIndex() uint64 { return n.fsm.AppliedIndex() }

// Subscribe calls fn with the applied index after each applied batch (see FSM.Subscribe).
func (n *Node) Subscribe(fn func(index uint64)) (cancel func()) { return n.fsm.Subscribe(fn) }

// Leader returns the current leader's peer ID, or "" when none is known.
func (n *Node) Leader() peer.ID {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return ""
	}
	p, err := peer.Decode(string(id))
	if err != nil {
		return ""
	}
	return p
}

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// State is the raft state of this node: Shutdown once raft stopped after this node's removal
// (raft itself may still report the candidate state it was entering when it was shut down).
func (n *Node) State() raft.RaftState {
	if n.raftStopped.Load() {
		return raft.Shutdown
	}
	return n.raft.State()
}

// ID is this node's identity.
func (n *Node) ID() identity.ID { return n.self }

// Stats returns raft's statistics plus the FSM's (fsm_applied_index, fsm_restores) and the
// catch-up refreshes run after refusing an unknown peer (vouch_refreshes).
func (n *Node) Stats() map[string]string {
	s := n.raft.Stats()
	s["fsm_applied_index"] = fmt.Sprint(n.fsm.AppliedIndex())
	s["fsm_restores"] = fmt.Sprint(n.fsm.restores.Load())
	s["vouch_refreshes"] = fmt.Sprint(n.refreshes.Load())
	return s
}

// LastContact is the time since this node last heard from the leader: 0 on the leader, and
// math.MaxInt64 when it never has. This is the age of the local view (DESIGN.md §4).
func (n *Node) LastContact() time.Duration {
	if n.IsLeader() {
		return 0
	}
	t := n.raft.LastContact()
	if t.IsZero() {
		return time.Duration(math.MaxInt64)
	}
	return time.Since(t)
}

// Replay reports how far this node has re-applied the log it held when it opened: caughtUp is
// false while raft's applied index is below that log's last index, unless a known leader's
// commit index, which this node has applied, is lower (the rest of the log was never committed
// and will be replaced). A node that opened with an empty log is always caught up.
func (n *Node) Replay() (applied, target uint64, caughtUp bool) {
	applied, target = n.raft.AppliedIndex(), n.replayTarget
	if commit := n.raft.CommitIndex(); n.Leader() != "" && commit > 0 && commit < target {
		target = commit
	}
	return applied, target, applied >= target
}

// JoinProblem is why this node's last attempt to join through its join peers failed (wrapping
// ErrNotAdmitted, ErrUnreachable or the peer's answer), or nil: it joined, needs no join, or has
// not tried yet.
func (n *Node) JoinProblem() error {
	p := n.joinProblem.Load()
	if p == nil {
		return nil
	}
	var listed bool
	n.fsm.Read(func(reg *identity.Registry) { _, listed = reg.Node(n.self) })
	if listed {
		return nil // raft reached this node before its next join attempt
	}
	return *p
}

// Member is one server of the raft configuration.
type Member struct {
	ID       peer.ID
	Address  raft.ServerAddress
	Suffrage raft.ServerSuffrage
	// LastHeard is when this node last received raft bytes from the member (the transport's
	// StreamLayer.LastHeard): zero when never since start, for this node itself, or when a
	// custom Config.Transport replaces the libp2p one.
	LastHeard time.Time
}

// Members returns the latest raft configuration.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("consensus: members: %w", err)
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		p, err := peer.Decode(string(s.ID))
		if err != nil {
			continue
		}
		m := Member{ID: p, Address: s.Address, Suffrage: s.Suffrage}
		if n.layer != nil && p != n.h.ID() {
			m.LastHeard = n.layer.LastHeard(p)
		}
		out = append(out, m)
	}
	return out, nil
}

// WaitForLeader blocks until a leader is known or ctx ends (ErrTimeout) or the node closes.
func (n *Node) WaitForLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if n.Leader() != "" {
			return nil
		}
		if err := n.removedErr(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return errf(ErrTimeout, "wait for leader: %v", ctx.Err())
		case <-n.ctx.Done():
			return errf(ErrClosed, "wait for leader")
		case <-t.C:
		}
	}
}

// WaitApplied blocks until the local registry reflects every committed entry up to index.
// It wakes on FSM notifications; a slow tick covers raft's no-op entries, which the FSM never
// sees.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		ch := n.fsm.Changed()
		if n.appliedCovers(index) {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			return errf(ErrTimeout, "wait for index %d (applied %d): %v", index, n.fsm.AppliedIndex(), ctx.Err())
		case <-n.ctx.Done():
			return errf(ErrClosed, "wait for index %d", index)
		}
	}
}

// appliedCovers reports whether the FSM state includes every entry up to target: either the FSM
// applied target, or every committed entry in (applied, target] is one the FSM never sees
// (no-op, barrier). Entries are read only once committed locally, so none can still be replaced;
// an entry below the log's first index was compacted into a snapshot, which the FSM already
// holds.
func (n *Node) appliedCovers(target uint64) bool {
	a := n.fsm.AppliedIndex()
	if a >= target {
		return true
	}
	if n.raft.CommitIndex() < target || n.raft.AppliedIndex() < target {
		return false
	}
	first, err := n.logs.FirstIndex()
	if err != nil {
		return false
	}
	for i := target; i > a; i-- {
		if i < first {
			return true // compacted: inside a snapshot the FSM already holds
		}
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			return false // a gap above the first index: being rewritten, wait
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}

// timeoutFrom returns the time left before ctx's deadline, or def when it has none.
func timeoutFrom(ctx context.Context, def time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return def
}

// waitFuture waits for a raft future or ctx, whichever comes first. raft resolves every future
// (at the latest on step-down or shutdown), so the helper goroutine always ends.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errf(ErrTimeout, "%v", ctx.Err())
	}
}
