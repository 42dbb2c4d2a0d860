package store

import (
	"encoding/binary"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// countFSM records the commands it applied.
type countFSM struct {
	mu      sync.Mutex
	applied []uint64
}

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, binary.BigEndian.Uint64(l.Data))
	return nil
}
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.ErrUnexpectedEOF }
func (f *countFSM) Restore(io.ReadCloser) error         { return io.ErrUnexpectedEOF }
func (f *countFSM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applied)
}

func startRaft(t *testing.T, s *Store, fsm raft.FSM, bootstrap bool) *raft.Raft {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = "node-1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.Logger = hclog.NewNullLogger()
	addr, trans := raft.NewInmemTransport("node-1")
	if bootstrap {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
		if err := raft.BootstrapCluster(conf, s, s, raft.NewInmemSnapshotStore(), trans, cfg); err != nil {
			t.Fatalf("BootstrapCluster: %v", err)
		}
	}
	r, err := raft.NewRaft(conf, fsm, s, s, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatalf("NewRaft: %v", err)
	}
	select {
	case <-waitLeader(r):
	case <-time.After(10 * time.Second):
		t.Fatal("no leader within 10 s")
	}
	return r
}

func waitLeader(r *raft.Raft) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for r.State() != raft.Leader {
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return ch
}

// TestRaftSingleNodeRestart is a sanity check of the store under real raft:
// bootstrap, apply 100 entries, shut down, reopen the store with a new raft,
// and check the log and the term survived and every entry is applied again.
func TestRaftSingleNodeRestart(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	fsm := &countFSM{}
	r := startRaft(t, s, fsm, true)
	for i := uint64(0); i < 100; i++ {
		if err := r.Apply(binary.BigEndian.AppendUint64(nil, i), 5*time.Second).Error(); err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
	}
	lastIndex := r.LastIndex()
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	term, err := s.GetUint64([]byte("CurrentTerm"))
	if err != nil || term == 0 {
		t.Fatalf("CurrentTerm = %d, %v", term, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, dir)
	if got, _ := s.LastIndex(); got != lastIndex {
		t.Fatalf("store LastIndex after reopen = %d; raft had %d", got, lastIndex)
	}
	fsm2 := &countFSM{}
	r = startRaft(t, s, fsm2, false)
	defer func() { _ = r.Shutdown().Error() }()
	if r.LastIndex() < lastIndex {
		t.Fatalf("raft LastIndex after restart = %d; want >= %d", r.LastIndex(), lastIndex)
	}
	if err := r.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if got := fsm2.count(); got != 100 {
		t.Fatalf("restarted FSM applied %d commands; want 100", got)
	}
	fsm2.mu.Lock()
	defer fsm2.mu.Unlock()
	for i, v := range fsm2.applied {
		if v != uint64(i) {
			t.Fatalf("command %d replayed as %d", i, v)
		}
	}
	if t2, _ := s.GetUint64([]byte("CurrentTerm")); t2 <= term {
		t.Fatalf("term after restart = %d; want > %d", t2, term)
	}
}
