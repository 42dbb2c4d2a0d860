package identity

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// randomSequence drives a registry through a seeded mix of valid and invalid commands. It returns
// the encoded commands and the `now` for each, starting with genesis.
type step struct {
	wire []byte
	now  time.Time
}

func randomSequence(t testing.TB, seed uint64, n int) []step {
	rnd := seeded(seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	key := func() PrivateKey { return mustKey(t, rnd) }
	ops := []PrivateKey{key(), key(), key(), key(), key()} // 3 in genesis, 2 candidates
	outsider := key()
	agentKeys := make([]PrivateKey, 16)
	for i := range agentKeys {
		agentKeys[i] = key()
	}
	nodeKeys := []PrivateKey{key(), key(), key()}
	cl, _ := NewClusterID(rnd)
	now := t0
	g := &Genesis{ClusterID: cl, TrustDomain: "prop.test", Threshold: 2,
		Operators: []OperatorEntry{{"op0", ops[0].Public()}, {"op1", ops[1].Public()}, {"op2", ops[2].Public()}},
		Nodes:     []NodeEntry{{Name: "node0", Key: nodeKeys[0].Public(), Voter: true}}}
	gc, _ := NewCommand(cl, g, now, rnd)
	gc.Sign(ops[0])
	gc.Sign(ops[1])
	steps := []step{{gc.Encode(), now}}
	names := []string{"a0", "a1", "a2", "a3", "a4", "a5"}
	pick := func() string { return names[rng.IntN(len(names))] }
	akey := func() PublicKey { return agentKeys[rng.IntN(len(agentKeys))].Public() }
	for range n {
		now = now.Add(time.Duration(rng.IntN(90)) * time.Second)
		var p Payload
		switch rng.IntN(17) {
		case 0, 1, 2:
			p = &RegisterAgent{Name: pick(), Key: akey(), ExpiresAt: now.Add(time.Duration(rng.IntN(7200)-600) * time.Second),
				Labels: map[string]string{"site": pick()}, Capabilities: []string{"send:" + pick()}}
		case 3:
			p = &RevokeAgent{Name: pick(), Reason: "r"}
		case 4:
			p = &QuarantineAgent{Name: pick()}
		case 5:
			p = &ReleaseAgent{Name: pick()}
		case 6:
			p = &RenewAgent{Name: pick(), ExpiresAt: now.Add(time.Duration(rng.IntN(7200)-600) * time.Second)}
		case 7:
			p = &RotateAgentKey{Name: pick(), NewKey: akey()}
		case 8:
			p = &ReinstateAgent{Name: pick(), Key: akey(), ExpiresAt: now.Add(time.Hour)}
		case 9:
			i := 3 + rng.IntN(2)
			p = &AddOperator{Operator: OperatorEntry{fmt.Sprintf("op%d", i), ops[i].Public()}}
		case 10:
			p = &RemoveOperator{Name: fmt.Sprintf("op%d", 3+rng.IntN(3))} // op5 does not exist
		case 11:
			p = &SetThreshold{Threshold: rng.IntN(5)}
		case 12:
			i := rng.IntN(3)
			if rng.IntN(2) == 0 {
				p = &AdmitNode{Node: NodeEntry{Name: fmt.Sprintf("node%d", i), Key: nodeKeys[i].Public()}}
			} else {
				p = &RemoveNode{Name: fmt.Sprintf("node%d", i)}
			}
		case 13:
			p = &SetPolicy{Version: uint64(rng.IntN(4)), Document: [][]byte{[]byte("v"), []byte("response:\n  revoke_quorum: 3\n")}[rng.IntN(2)]}
		case 14:
			p = &SetAutomatedResponse{Enabled: rng.IntN(2) == 0}
		case 15:
			p = &AutoRevokeAgent{Name: pick(), Reason: "auto"}
		case 16:
			p = &SetRevokeQuorum{Quorum: rng.IntN(4)}
		}
		issued := now
		switch rng.IntN(12) {
		case 0:
			issued = now.Add(-11 * time.Minute)
		case 1:
			issued = now.Add(2 * time.Minute)
		case 2:
			issued = now.Add(-time.Duration(rng.IntN(600)) * time.Second)
		}
		cmdCl := cl
		if rng.IntN(40) == 0 {
			cmdCl = ClusterID{7}
		}
		c, err := NewCommand(cmdCl, p, issued, rnd)
		if err != nil {
			t.Fatal(err)
		}
		signers := ops[:3]
		if p.Kind() == KindAutoRevokeAgent {
			signers = nodeKeys
		}
		for _, i := range rng.Perm(3)[:1+rng.IntN(3)] {
			c.Sign(signers[i])
		}
		if rng.IntN(8) == 0 { // an operator that may or may not have been added yet
			c.Sign(ops[3+rng.IntN(2)])
		}
		if rng.IntN(20) == 0 {
			c.Sign(outsider)
		}
		w := c.Encode()
		if rng.IntN(15) == 0 && len(steps) > 1 { // replay an earlier command
			w = steps[1+rng.IntN(len(steps)-1)].wire
		}
		applyNow := now
		if rng.IntN(20) == 0 { // a `now` that goes backwards
			applyNow = now.Add(-5 * time.Minute)
		}
		steps = append(steps, step{w, applyNow})
	}
	return steps
}

func applyWire(r *Registry, s step) error {
	c, err := DecodeCommand(s.wire)
	if err != nil {
		return err
	}
	v, err := c.Verify()
	if err != nil {
		return err
	}
	return r.Apply(v, s.now)
}

func TestPropertyDeterministicReplicas(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			steps := randomSequence(t, seed, 250)
			a, b := NewRegistry(), NewRegistry()
			rng := rand.New(rand.NewPCG(seed, 1))
			applied := 0
			for i, s := range steps {
				before := a.Hash()
				// One decode and verify (the expensive part under -race), applied to both.
				var errA, errB error
				if c, err := DecodeCommand(s.wire); err != nil {
					errA, errB = err, err
				} else if v, err := c.Verify(); err != nil {
					errA, errB = err, err
				} else {
					errA, errB = a.Apply(v, s.now), b.Apply(v, s.now)
				}
				if CodeOf(errA) != CodeOf(errB) {
					t.Fatalf("seed %d step %d: replicas disagree: %v vs %v", seed, i, errA, errB)
				}
				if errA != nil {
					if CodeOf(errA) == "unknown" {
						t.Fatalf("seed %d step %d: error without a sentinel: %v", seed, i, errA)
					}
					if a.Hash() != before {
						t.Fatalf("seed %d step %d: rejected command (%v) changed the hash", seed, i, errA)
					}
				} else {
					applied++
				}
				if a.Hash() != b.Hash() {
					t.Fatalf("seed %d step %d: hashes differ", seed, i)
				}
				if rng.IntN(25) == 0 { // snapshot → restore: same hash, and it keeps going identically
					var buf bytes.Buffer
					if err := a.WriteSnapshot(&buf); err != nil {
						t.Fatal(err)
					}
					snap := buf.Bytes()
					r, err := ReadSnapshot(bytes.NewReader(snap))
					if err != nil {
						t.Fatalf("seed %d step %d: restore: %v", seed, i, err)
					}
					if r.Hash() != a.Hash() {
						t.Fatalf("seed %d step %d: restored hash differs", seed, i)
					}
					var buf2 bytes.Buffer
					_ = r.WriteSnapshot(&buf2)
					if !bytes.Equal(buf2.Bytes(), snap) {
						t.Fatal("snapshot of the restored registry differs")
					}
					b = r
				}
			}
			if applied < 15 || applied == len(steps) {
				t.Fatalf("seed %d: %d of %d applied; the mix is not exercising both paths", seed, applied, len(steps))
			}
			t.Logf("seed %d: %d of %d applied, %d agents, %d audit", seed, applied, len(steps), len(a.agents), len(a.audit))
		})
	}
}

func TestReadSnapshotRejects(t *testing.T) {
	f := newFixture(t, 40, 2, 1)
	f.register("a1")
	f.mustApply(&RevokeAgent{Name: "a1"}, f.ops[0])
	var buf bytes.Buffer
	if err := f.reg.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	r, err := ReadSnapshot(bytes.NewReader(good))
	if err != nil || r.Hash() != f.reg.Hash() {
		t.Fatalf("round trip: %v", err)
	}
	if a, ok := r.Agent("a1"); !ok || a.Status != StatusRevoked {
		t.Fatal("restored agent")
	}
	empty := new(bytes.Buffer)
	_ = NewRegistry().WriteSnapshot(empty)
	if r, err := ReadSnapshot(bytes.NewReader(empty.Bytes())); err != nil || r.Hash() != NewRegistry().Hash() {
		t.Fatalf("empty registry round trip: %v", err)
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"trailing", append(bytes.Clone(good), 0)},
		{"truncated", good[:len(good)-1]},
		{"bad magic", append([]byte("VIGILREX"), good[8:]...)},
		{"bad version", func() []byte { b := bytes.Clone(good); b[8] = 9; return b }()},
		{"empty", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadSnapshot(bytes.NewReader(tc.b))
			wantErr(t, err, ErrMalformed)
		})
	}
	// Every single-byte truncation is refused.
	for i := range good {
		if _, err := ReadSnapshot(bytes.NewReader(good[:i])); err == nil {
			t.Fatalf("truncation at %d accepted", i)
		}
	}
}

func FuzzReadSnapshot(f *testing.F) {
	for seed := uint64(1); seed <= 2; seed++ {
		r := NewRegistry()
		for _, s := range randomSequence(f, seed, 40) {
			_ = applyWire(r, s)
		}
		var buf bytes.Buffer
		_ = r.WriteSnapshot(&buf)
		f.Add(buf.Bytes())
	}
	var buf bytes.Buffer
	_ = NewRegistry().WriteSnapshot(&buf)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ReadSnapshot(bytes.NewReader(b))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := r.WriteSnapshot(&out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatal("accepted a non-canonical snapshot")
		}
	})
}
