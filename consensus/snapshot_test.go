package consensus

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vigil-mesh/vigil/consensus/transport"
	"github.com/vigil-mesh/vigil/identity"
)

// TestFSMSnapshotCatchUp: a follower that was cut off while the leader snapshotted and compacted
// its log catches up by snapshot install (raft's in-memory twins: only the FSM is under test).
func TestFSMSnapshotCatchUp(t *testing.T) {
	const n = 3
	var (
		fsms   [n]*FSM
		rafts  [n]*raft.Raft
		trans  [n]*raft.InmemTransport
		stores [n]*raft.InmemStore
	)
	var servers []raft.Server
	for i := range n {
		_, trans[i] = raft.NewInmemTransport(raft.ServerAddress(fmt.Sprint("n", i)))
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(fmt.Sprint("n", i)), Address: trans[i].LocalAddr()})
	}
	for i := range n {
		for j := range n {
			if i != j {
				trans[i].Connect(trans[j].LocalAddr(), trans[j])
			}
		}
	}
	for i := range n {
		c := raft.DefaultConfig()
		c.LocalID = servers[i].ID
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
		c.CommitTimeout = 5 * time.Millisecond
		c.SnapshotThreshold, c.TrailingLogs, c.SnapshotInterval = 8, 4, time.Hour
		c.Logger = transport.NewHCLogger(testLogger(t), "raft")
		stores[i] = raft.NewInmemStore()
		fsms[i] = NewFSM(testLogger(t))
		r, err := raft.NewRaft(c, fsms[i], stores[i], stores[i], raft.NewInmemSnapshotStore(), trans[i])
		if err != nil {
			t.Fatal(err)
		}
		rafts[i] = r
		t.Cleanup(func() { _ = r.Shutdown().Error() })
	}
	if err := rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	leader := waitInmemLeader(t, rafts[:])
	lagger := (leader + 1) % n

	now := time.Now()
	gen, ops := newGenesis(t, 1, []identity.NodeEntry{{Name: "n1", Key: mustKey(t).Public(), Voter: true}}, now)
	apply := func(c *identity.Command) {
		t.Helper()
		f := rafts[leader].Apply(c.Encode(), 5*time.Second)
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		if err := f.Response().(ApplyResult).Err; err != nil {
			t.Fatal(err)
		}
	}
	apply(gen)

	// Cut the lagger off, write past the snapshot threshold, snapshot and compact.
	trans[lagger].DisconnectAll()
	for i := range n {
		if i != lagger {
			trans[i].Disconnect(trans[lagger].LocalAddr())
		}
	}
	for i := range 40 {
		apply(registerAgent(t, gen.ClusterID, fmt.Sprintf("agent-%d", i), now, ops[0]))
	}
	if err := rafts[leader].Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	first, _ := stores[leader].FirstIndex()
	if first <= fsms[lagger].AppliedIndex()+1 {
		t.Fatalf("leader log not compacted past the lagger (first index %d)", first)
	}

	for i := range n {
		if i != lagger {
			trans[i].Connect(trans[lagger].LocalAddr(), trans[lagger])
			trans[lagger].Connect(trans[i].LocalAddr(), trans[i])
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for fsms[lagger].hash() != fsms[leader].hash() {
		if time.Now().After(deadline) {
			t.Fatal("lagger did not catch up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fsms[lagger].restores.Load() == 0 {
		t.Fatal("lagger caught up without a snapshot install")
	}
}

func waitInmemLeader(t *testing.T, rs []*raft.Raft) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, r := range rs {
			if r.State() == raft.Leader {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader")
	return -1
}
