package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
)

// countFSM counts applied entries.
type countFSM struct{ n atomic.Uint64 }

func (f *countFSM) Apply(*raft.Log) any { return f.n.Add(1) }

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnap(f.n.Load()), nil }

func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [8]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	f.n.Store(binary.BigEndian.Uint64(b[:]))
	return nil
}

type countSnap uint64

func (s countSnap) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(binary.BigEndian.AppendUint64(nil, uint64(s))); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnap) Release() {}

type raftNode struct {
	h     host.Host
	gate  *gate
	layer *StreamLayer
	trans *raft.NetworkTransport
	raft  *raft.Raft
	fsm   *countFSM
	down  bool
}

func (n *raftNode) shutdown(tb testing.TB) {
	if n.down {
		return
	}
	n.down = true
	if err := n.raft.Shutdown().Error(); err != nil {
		tb.Errorf("shutdown: %v", err)
	}
	_ = n.trans.Close()
}

// newCluster starts n raft nodes over the libp2p transport, bootstrapped with each other, with
// in-memory log, stable and snapshot stores. Every node admits every other node.
func newCluster(tb testing.TB, n int, logLevel slog.Level) []*raftNode {
	tb.Helper()
	logger := testLogger(tb, logLevel)
	nodes := make([]*raftNode, n)
	var servers []raft.Server
	for i := range nodes {
		h := newHost(tb)
		g := newGate()
		cfg := DefaultConfig()
		cfg.Logger = logger.With("node", i)
		trans, layer, err := NewTransport(h, g.Authorize, cfg)
		if err != nil {
			tb.Fatal(err)
		}
		nodes[i] = &raftNode{h: h, gate: g, layer: layer, trans: trans, fsm: &countFSM{}}
		servers = append(servers, raft.Server{ID: raft.ServerID(h.ID().String()), Address: trans.LocalAddr()})
	}
	for i, nd := range nodes {
		c := raft.DefaultConfig()
		c.LocalID = raft.ServerID(nd.h.ID().String())
		c.HeartbeatTimeout = 250 * time.Millisecond
		c.ElectionTimeout = 250 * time.Millisecond
		c.LeaderLeaseTimeout = 100 * time.Millisecond
		c.CommitTimeout = 10 * time.Millisecond
		c.Logger = NewHCLogger(logger.With("node", i), "raft")
		logs := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(c, logs, logs, snaps, nd.trans, raft.Configuration{Servers: servers}); err != nil {
			tb.Fatal(err)
		}
		r, err := raft.NewRaft(c, nd.fsm, logs, logs, snaps, nd.trans)
		if err != nil {
			tb.Fatal(err)
		}
		nd.raft = r
	}
	tb.Cleanup(func() {
		for _, nd := range nodes {
			nd.shutdown(tb)
		}
	})
	return nodes
}

// leader waits for exactly one live node to be leader and returns it.
func leader(tb testing.TB, nodes []*raftNode) *raftNode {
	tb.Helper()
	var l *raftNode
	eventually(tb, 10*time.Second, "a leader", func() bool {
		l = nil
		for _, nd := range nodes {
			if !nd.down && nd.raft.State() == raft.Leader {
				if l != nil {
					return false
				}
				l = nd
			}
		}
		return l != nil
	})
	return l
}

func apply(tb testing.TB, r *raft.Raft, n int) {
	tb.Helper()
	for i := range n {
		if err := r.Apply(fmt.Appendf(nil, "entry-%d", i), 5*time.Second).Error(); err != nil {
			tb.Fatalf("apply %d: %v", i, err)
		}
	}
}

func waitCount(tb testing.TB, nodes []*raftNode, want uint64) {
	tb.Helper()
	for i, nd := range nodes {
		if nd.down {
			continue
		}
		eventually(tb, 10*time.Second, fmt.Sprintf("node %d to apply %d entries", i, want), func() bool {
			return nd.fsm.n.Load() == want
		})
	}
}

func TestRaftClusterOverLibp2p(t *testing.T) {
	nodes := newCluster(t, 3, slog.LevelWarn)
	l := leader(t, nodes)
	apply(t, l.raft, 200)
	waitCount(t, nodes, 200)

	// The leader goes away; the other two elect a new one and keep committing.
	l.shutdown(t)
	l2 := leader(t, nodes)
	if l2 == l {
		t.Fatal("shut-down node still leader")
	}
	apply(t, l2.raft, 50)
	waitCount(t, nodes, 250)
	for _, nd := range nodes {
		if !nd.down && (nd.layer.Stats().DialRefused != 0 || nd.layer.Stats().AcceptRefused != 0) {
			t.Fatalf("admitted peers were refused: %+v", nd.layer.Stats())
		}
	}
}

func TestRaftPartitionByAuthorizer(t *testing.T) {
	nodes := newCluster(t, 3, slog.LevelError)
	l := leader(t, nodes)
	apply(t, l.raft, 20)
	waitCount(t, nodes, 20)

	var f, g *raftNode // f cuts the leader off; g stays connected to both
	for _, nd := range nodes {
		if nd != l {
			if f == nil {
				f = nd
			} else {
				g = nd
			}
		}
	}
	// The partition hook as the node will use it on removal: refuse, then drop open streams.
	f.gate.set(l.h.ID(), true)
	f.layer.DropPeer(l.h.ID())

	apply(t, l.raft, 50) // still commits through g
	waitCount(t, []*raftNode{l, g}, 70)
	// Give f several heartbeat and election timeouts to receive anything from l.
	time.Sleep(time.Second)
	if got := f.fsm.n.Load(); got != 20 {
		t.Fatalf("partitioned node applied %d entries, want 20: raft traffic crossed a refusal", got)
	}
	if st := f.layer.Stats(); st.AcceptRefused == 0 {
		t.Fatalf("f never refused the leader's streams: %+v", st)
	}
	if leader(t, nodes) != l {
		t.Fatal("leadership moved: f disrupted the cluster")
	}

	// Heal: f admits l again and catches up.
	f.gate.set(l.h.ID(), false)
	apply(t, leader(t, nodes).raft, 10)
	waitCount(t, nodes, 80)
}

// BenchmarkRaftApplyLibp2p measures the latency of one committed Apply on a 3-node cluster over
// the libp2p transport on loopback (in-memory stores: no fsync in the figure).
func BenchmarkRaftApplyLibp2p(b *testing.B) {
	nodes := newCluster(b, 3, slog.LevelError)
	l := leader(b, nodes)
	data := make([]byte, 256)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if err := l.raft.Apply(data, 5*time.Second).Error(); err != nil {
			if errors.Is(err, raft.ErrNotLeader) {
				b.Fatal("leadership lost during the benchmark")
			}
			b.Fatal(err)
		}
	}
}
