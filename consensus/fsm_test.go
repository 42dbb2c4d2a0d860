package consensus

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vigil-mesh/vigil/identity"
)

// fsmFixture is a log mixing valid commands with every kind of rejection.
type fsmFixture struct {
	logs []*raft.Log
	want map[uint64]error // expected sentinel per index; absent = applied
}

func newFSMFixture(t *testing.T) fsmFixture {
	t.Helper()
	base := time.Now().UTC().Truncate(time.Millisecond)
	node := mustKey(t)
	gen, ops := newGenesis(t, 2, []identity.NodeEntry{{Name: "n1", Key: node.Public(), Voter: true}}, base)
	cid := gen.ClusterID
	otherGen, otherOps := newGenesis(t, 1, []identity.NodeEntry{{Name: "n1", Key: node.Public(), Voter: true}}, base)

	fx := fsmFixture{want: map[uint64]error{}}
	add := func(c *identity.Command, want error) {
		i := uint64(len(fx.logs) + 1)
		fx.logs = append(fx.logs, cmdLog(i, c, base.Add(time.Duration(i)*time.Millisecond)))
		if want != nil {
			fx.want[i] = want
		}
	}
	add(gen, nil)
	first := registerAgent(t, cid, "agent-0", base, ops[0])
	add(first, nil)
	for i := 1; i < 24; i++ {
		add(registerAgent(t, cid, "agent-"+string(rune('a'+i)), base, ops[i%2]), nil)
	}
	add(forged(registerAgent(t, cid, "forged", base, ops[0])), identity.ErrBadSignature)
	add(signed(t, cid, &identity.RegisterAgent{Name: "unsigned", Key: mustKey(t).Public(), ExpiresAt: base.Add(time.Hour)}, base), identity.ErrUnsigned)
	add(first, identity.ErrReplay)
	add(registerAgent(t, cid, "stale", base.Add(-11*time.Minute), ops[0]), identity.ErrStale)
	add(registerAgent(t, otherGen.ClusterID, "wrong-cluster", base, otherOps[0]), identity.ErrWrongCluster)
	add(registerAgent(t, cid, "not-operator", base, mustKey(t)), identity.ErrUnauthorized)
	add(gen, identity.ErrAlreadyInitialised)
	fx.logs = append(fx.logs, &raft.Log{Index: uint64(len(fx.logs) + 1), Type: raft.LogCommand, Data: []byte("garbage"), AppendedAt: base})
	fx.want[uint64(len(fx.logs))] = identity.ErrMalformed
	fx.logs = append(fx.logs, &raft.Log{Index: uint64(len(fx.logs) + 1), Type: raft.LogConfiguration, AppendedAt: base})
	return fx
}

func TestFSMBatchEqualsSequential(t *testing.T) {
	fx := newFSMFixture(t)
	batch, seq := NewFSM(testLogger(t)), NewFSM(testLogger(t))

	var notified []uint64
	cancel := batch.Subscribe(func(i uint64) { notified = append(notified, i) })
	defer cancel()
	bres := batch.ApplyBatch(fx.logs)
	var sres []any
	for _, l := range fx.logs {
		sres = append(sres, seq.Apply(l))
	}

	for i, l := range fx.logs {
		b, s := bres[i].(ApplyResult), sres[i].(ApplyResult)
		if b.Index != l.Index || s.Index != l.Index {
			t.Fatalf("entry %d: indexes %d and %d", l.Index, b.Index, s.Index)
		}
		if identity.CodeOf(b.Err) != identity.CodeOf(s.Err) {
			t.Fatalf("entry %d: batch %v, sequential %v", l.Index, b.Err, s.Err)
		}
		want := fx.want[l.Index]
		if want == nil && b.Err != nil {
			t.Fatalf("entry %d: unexpected rejection %v", l.Index, b.Err)
		}
		if want != nil && !errors.Is(b.Err, want) {
			t.Fatalf("entry %d: got %v, want %v", l.Index, b.Err, want)
		}
	}
	if batch.hash() != seq.hash() {
		t.Fatal("batch and sequential apply give different registry hashes")
	}
	last := fx.logs[len(fx.logs)-1].Index
	if batch.AppliedIndex() != last || seq.AppliedIndex() != last {
		t.Fatalf("applied %d / %d, want %d", batch.AppliedIndex(), seq.AppliedIndex(), last)
	}
	if len(notified) != 1 || notified[0] != last {
		t.Fatalf("subscriber saw %v, want [%d]", notified, last)
	}
	var agents int
	batch.Read(func(r *identity.Registry) { agents = len(r.Agents()) })
	if agents != 24 {
		t.Fatalf("%d agents registered, want 24", agents)
	}
}

// hash reads the registry hash under the lock.
func (f *FSM) hash() (h [32]byte) {
	f.Read(func(r *identity.Registry) { h = r.Hash() })
	return h
}

func TestFSMSnapshotRestore(t *testing.T) {
	fx := newFSMFixture(t)
	src := NewFSM(testLogger(t))
	n := len(fx.logs) - 4
	src.ApplyBatch(fx.logs[:n])

	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v (closed %v)", err, sink.closed)
	}
	snap.Release()
	data := bytes.Clone(sink.Bytes())

	dst := NewFSM(testLogger(t))
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if dst.hash() != src.hash() || dst.AppliedIndex() != src.AppliedIndex() || !dst.lastNow.Equal(src.lastNow) {
		t.Fatal("restored FSM differs from the original")
	}
	// The rest of the log gives the same state on both: the clock was restored too.
	r1, r2 := src.ApplyBatch(fx.logs[n:]), dst.ApplyBatch(fx.logs[n:])
	for i := range r1 {
		if identity.CodeOf(r1[i].(ApplyResult).Err) != identity.CodeOf(r2[i].(ApplyResult).Err) {
			t.Fatalf("entry %d differs after restore", i)
		}
	}
	if dst.hash() != src.hash() {
		t.Fatal("hashes diverge after restore")
	}

	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("XXXXXXXX"), data[8:]...)},
		{"truncated header", data[:10]},
		{"truncated registry", data[:len(data)/2]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := dst.hash()
			if err := dst.Restore(io.NopCloser(bytes.NewReader(tc.data))); err == nil {
				t.Fatal("corrupt snapshot restored")
			}
			if dst.hash() != before {
				t.Fatal("failed restore changed the state")
			}
		})
	}
}

// FuzzRestore: a snapshot from disk or the network never panics the FSM.
func FuzzRestore(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeSnapshotHeader(7, time.Unix(1, 0)))
	reg := NewFSM(nil)
	snap, _ := reg.Snapshot()
	var sink memSink
	_ = snap.Persist(&sink)
	f.Add(sink.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		fsm := NewFSM(nil)
		_ = fsm.Restore(io.NopCloser(bytes.NewReader(b)))
	})
}
