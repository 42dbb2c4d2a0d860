package consensus

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

// removalFixture is a replica holding a genesis (n1) and the admitted nodes n2 (self) and n3,
// with an FSM that reports self's removal. An earlier key named n2 was admitted and removed
// before self took the name: oldRemoval is the command that removed it.
func removalFixture(t *testing.T) (n *Node, cid identity.ClusterID, ops []identity.PrivateKey, removedAt *[]uint64, oldRemoval *identity.Command) {
	t.Helper()
	now := time.Now()
	n1, old, self, n3 := mustKey(t), mustKey(t), mustKey(t), mustKey(t)
	gen, ops := newGenesis(t, 2, []identity.NodeEntry{{Name: "n1", Key: n1.Public(), Voter: true}}, now)
	cid = gen.ClusterID
	n = &Node{self: self.ID(), cluster: cid, fsm: NewFSM(testLogger(t))}
	var calls []uint64
	n.fsm.self, n.fsm.onSelfRemoved = self.ID(), func(i uint64) { calls = append(calls, i) }
	oldRemoval = signed(t, cid, &identity.RemoveNode{Name: "n2"}, now, ops[0])
	for i, c := range []*identity.Command{gen,
		signed(t, cid, &identity.AdmitNode{Node: identity.NodeEntry{Name: "n2", Key: old.Public()}}, now, ops[0]),
		oldRemoval,
		signed(t, cid, &identity.AdmitNode{Node: identity.NodeEntry{Name: "n2", Key: self.Public()}}, now, ops[0]),
		signed(t, cid, &identity.AdmitNode{Node: identity.NodeEntry{Name: "n3", Key: n3.Public()}}, now, ops[0]),
	} {
		if res := n.fsm.Apply(cmdLog(uint64(i+1), c, now)).(ApplyResult); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	return n, cid, ops, &calls, oldRemoval
}

// TestFSMReportsSelfRemoval: applying the command that removes this node calls onSelfRemoved
// with its index, once; removing another node does not, but keeps its command for the notice.
func TestFSMReportsSelfRemoval(t *testing.T) {
	n, cid, ops, calls, _ := removalFixture(t)
	now := time.Now()
	if res := n.fsm.Apply(cmdLog(6, signed(t, cid, &identity.RemoveNode{Name: "n3"}, now, ops[0]), now)).(ApplyResult); res.Err != nil {
		t.Fatal(res.Err)
	}
	if len(*calls) != 0 {
		t.Fatalf("removing n3 reported self removed: %v", *calls)
	}
	n3ID := identity.ID{}
	n.fsm.Read(func(r *identity.Registry) {
		for _, e := range r.Audit(identity.AuditQuery{}) {
			if e.Kind == identity.KindRemoveNode {
				n3ID, _ = identity.ParseID(e.Subjects[1])
			}
		}
	})
	if rec, ok := n.fsm.removal(n3ID); !ok || rec.index != 6 {
		t.Fatalf("removal of n3 not kept: %+v %v", rec, ok)
	}
	if res := n.fsm.Apply(cmdLog(7, signed(t, cid, &identity.RemoveNode{Name: "n2"}, now, ops[1]), now)).(ApplyResult); res.Err != nil {
		t.Fatal(res.Err)
	}
	if len(*calls) != 1 || (*calls)[0] != 7 {
		t.Fatalf("onSelfRemoved calls = %v, want [7]", *calls)
	}
}

// TestRemovalNotice: a notice is accepted only for a valid remove-node command of this cluster
// that names this node and is signed by operators this replica knows; everything else is
// refused with the reason and changes nothing.
func TestRemovalNotice(t *testing.T) {
	n, cid, ops, _, oldRemoval := removalFixture(t)
	now := time.Now()
	other, _ := newGenesis(t, 1, nil, now)
	good := signed(t, cid, &identity.RemoveNode{Name: "n2"}, now, ops[1])
	for _, tc := range []struct {
		name string
		req  []byte
		want error
	}{
		{"short", []byte{1, 2}, ErrProtocol},
		{"garbage", encodeRemovalNotice(7, []byte("not a command")), identity.ErrMalformed},
		{"other cluster", encodeRemovalNotice(7, signed(t, other.ClusterID, &identity.RemoveNode{Name: "n2"}, now, ops[0]).Encode()), identity.ErrWrongCluster},
		{"forged signature", encodeRemovalNotice(7, forged(good).Encode()), identity.ErrBadSignature},
		{"not an operator", encodeRemovalNotice(7, signed(t, cid, &identity.RemoveNode{Name: "n2"}, now, mustKey(t)).Encode()), identity.ErrUnauthorized},
		{"another node", encodeRemovalNotice(7, signed(t, cid, &identity.RemoveNode{Name: "n3"}, now, ops[0]).Encode()), identity.ErrInvalid},
		{"replayed removal of an earlier n2", encodeRemovalNotice(7, oldRemoval.Encode()), identity.ErrReplay},
		{"not a removal", encodeRemovalNotice(7, registerAgent(t, cid, "a", now, ops[0]).Encode()), ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := n.checkRemovalNotice(tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	r, err := n.checkRemovalNotice(encodeRemovalNotice(7, good.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	if r.Index != 7 || len(r.By) != 1 || r.By[0] != "op2" || r.Node != n.self.String() {
		t.Fatalf("removal = %+v", r)
	}
}

// TestRemovedRecord: the removal record round-trips through the data dir; a corrupt one is a
// data dir error (Open then refuses to start; TestRemovedNodeStops in node/ restarts a removed
// node for real).
func TestRemovedRecord(t *testing.T) {
	dir := t.TempDir()
	r := Removal{Node: "12D3KooWexample", Index: 12, By: []string{"alice"}}
	if err := writeRemoved(dir, r); err != nil {
		t.Fatal(err)
	}
	got, err := readRemoved(dir)
	if err != nil || got == nil || got.Index != 12 || got.By[0] != "alice" {
		t.Fatalf("readRemoved = %+v, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, removedFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readRemoved(dir); !errors.Is(err, ErrDataDir) {
		t.Fatalf("corrupt record: %v, want ErrDataDir", err)
	}
	if got, err := readRemoved(t.TempDir()); got != nil || err != nil {
		t.Fatalf("no record: %+v, %v", got, err)
	}
}
