package identity

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

func TestGenesis(t *testing.T) {
	rnd := seeded(20)
	ops := []PrivateKey{mustKey(t, rnd), mustKey(t, rnd), mustKey(t, rnd)}
	nk := mustKey(t, rnd)
	cl, _ := NewClusterID(rnd)
	gen := func(m int) *Genesis {
		g := &Genesis{ClusterID: cl, TrustDomain: "td", Threshold: m,
			Nodes: []NodeEntry{{Name: "n1", Key: nk.Public()}}}
		for i, k := range ops {
			g.Operators = append(g.Operators, OperatorEntry{Name: "op" + string(rune('a'+i)), Key: k.Public()})
		}
		return g
	}
	outsider := mustKey(t, rnd)
	cases := []struct {
		name    string
		p       *Genesis
		cluster ClusterID
		signers []PrivateKey
		want    error
	}{
		{"ok 2 of 3", gen(2), cl, ops[:2], nil},
		{"one signer for M=2", gen(2), cl, ops[:1], ErrInsufficientSignatures},
		{"outsider signs", gen(1), cl, []PrivateKey{outsider}, ErrUnauthorized},
		{"threshold zero", gen(0), cl, ops[:1], ErrInvalid},
		{"threshold above N", gen(4), cl, ops, ErrInsufficientSignatures},
		{"wrong cluster in command", gen(1), ClusterID{9}, ops[:1], ErrWrongCluster},
		{"no nodes", func() *Genesis { g := gen(1); g.Nodes = nil; return g }(), cl, ops[:1], ErrInvalid},
		{"no trust domain", func() *Genesis { g := gen(1); g.TrustDomain = ""; return g }(), cl, ops[:1], ErrInvalid},
		{"zero cluster", func() *Genesis { g := gen(1); g.ClusterID = ClusterID{}; return g }(), ClusterID{}, ops[:1], ErrInvalid},
		{"duplicate operator key", func() *Genesis {
			g := gen(1)
			g.Operators[1].Key = g.Operators[0].Key
			return g
		}(), cl, ops[:1], ErrInvalid},
		{"node reuses operator name", func() *Genesis { g := gen(1); g.Nodes[0].Name = "opa"; return g }(), cl, ops[:1], ErrInvalid},
		{"bad node addr", func() *Genesis {
			g := gen(1)
			g.Nodes[0].Addrs = []string{"/ip4/1.2.3.4/tcp/1/p2p/" + nk.ID().String()}
			return g
		}(), cl, ops[:1], ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry()
			c, err := NewCommand(tc.cluster, tc.p, t0, rnd)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tc.signers {
				c.Sign(k)
			}
			v, err := c.Verify()
			if err != nil {
				t.Fatal(err)
			}
			before := r.Hash()
			err = r.Apply(v, t0)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if r.ClusterID() != cl || r.Threshold() != 2 || len(r.Operators()) != 3 || len(r.Nodes()) != 1 || r.TrustDomain() != "td" {
					t.Fatalf("state after genesis: %s", r)
				}
				// Only once.
				c2, _ := NewCommand(cl, tc.p, t0, rnd)
				c2.Sign(ops[0])
				c2.Sign(ops[1])
				v2, _ := c2.Verify()
				wantErr(t, r.Apply(v2, t0), ErrAlreadyInitialised)
				return
			}
			wantErr(t, err, tc.want)
			if r.Hash() != before {
				t.Fatal("rejected genesis changed the registry")
			}
		})
	}
}

func TestNoGenesis(t *testing.T) {
	rnd := seeded(21)
	k := mustKey(t, rnd)
	c, _ := NewCommand(ClusterID{1}, &ReleaseAgent{Name: "a"}, t0, rnd)
	c.Sign(k)
	v, _ := c.Verify()
	wantErr(t, NewRegistry().Apply(v, t0), ErrNoGenesis)
}

func TestGenesisExemptFromWindow(t *testing.T) {
	// A genesis issued a week before it is applied (genesis.bin distributed later) is accepted.
	rnd := seeded(23)
	op, nk := mustKey(t, rnd), mustKey(t, rnd)
	cl, _ := NewClusterID(rnd)
	c, _ := NewCommand(cl, &Genesis{ClusterID: cl, TrustDomain: "td", Threshold: 1,
		Operators: []OperatorEntry{{"op", op.Public()}}, Nodes: []NodeEntry{{Name: "n", Key: nk.Public()}}}, t0, rnd)
	c.Sign(op)
	v, _ := c.Verify()
	if err := NewRegistry().Apply(v, t0.Add(7*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func TestCommandChecks(t *testing.T) {
	f := newFixture(t, 24, 3, 2)
	f.register("a1")
	mk := func(at time.Time, cl ClusterID) *Command {
		c, err := NewCommand(cl, &QuarantineAgent{Name: "a1", Reason: "x"}, at, f.rnd)
		if err != nil {
			t.Fatal(err)
		}
		c.Sign(f.ops[0])
		return c
	}
	outsider := mustKey(t, f.rnd)
	cases := []struct {
		name string
		c    *Command
		want error
	}{
		{"wrong cluster", mk(f.now, ClusterID{1}), ErrWrongCluster},
		{"stale", mk(f.now.Add(-10*time.Minute-time.Nanosecond), f.cluster), ErrStale},
		{"future", mk(f.now.Add(time.Minute+time.Nanosecond), f.cluster), ErrFromFuture},
		{"non-operator signer", func() *Command {
			c, _ := NewCommand(f.cluster, &QuarantineAgent{Name: "a1"}, f.now, f.rnd)
			c.Sign(outsider)
			return c
		}(), ErrUnauthorized},
		{"node signer", func() *Command {
			c, _ := NewCommand(f.cluster, &QuarantineAgent{Name: "a1"}, f.now, f.rnd)
			c.Sign(f.nodes[0])
			return c
		}(), ErrUnauthorized},
		{"operator plus outsider", func() *Command {
			c, _ := NewCommand(f.cluster, &QuarantineAgent{Name: "a1"}, f.now, f.rnd)
			c.Sign(f.ops[0])
			c.Sign(outsider)
			return c
		}(), ErrUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.reg.Hash()
			wantErr(t, f.applyCmd(tc.c), tc.want)
			if f.reg.Hash() != before {
				t.Fatal("rejected command changed the registry")
			}
		})
	}
	// The window edges are inclusive.
	if err := f.applyCmd(mk(f.now.Add(-10*time.Minute), f.cluster)); err != nil {
		t.Fatalf("command exactly MaxCommandAge old: %v", err)
	}
	f.mustApply(&ReleaseAgent{Name: "a1"}, f.ops[1])
	if err := f.applyCmd(mk(f.now.Add(time.Minute), f.cluster)); err != nil {
		t.Fatalf("command exactly MaxClockSkew ahead: %v", err)
	}
}

func TestReplayAndNonceMemory(t *testing.T) {
	f := newFixture(t, 25, 1, 1)
	f.register("a1")
	c := f.cmd(&QuarantineAgent{Name: "a1"}, f.ops[0])
	if err := f.applyCmd(c); err != nil {
		t.Fatal(err)
	}
	f.mustApply(&ReleaseAgent{Name: "a1"}, f.ops[0])
	before := f.reg.Hash()
	wantErr(t, f.applyCmd(c), ErrReplay)
	if f.reg.Hash() != before {
		t.Fatal("replay changed state")
	}
	// A different command reusing the nonce is a replay too.
	c2 := f.cmd(&RenewAgent{Name: "a1", ExpiresAt: f.now.Add(2 * time.Hour)})
	c2.Nonce = c.Nonce
	c2.Sign(f.ops[0])
	wantErr(t, f.applyCmd(c2), ErrReplay)

	// Nonces are forgotten once their commands would be stale anyway.
	n := len(f.reg.nonces)
	if n != 4 { // genesis, register, quarantine, release
		t.Fatalf("%d nonces remembered, want 4", n)
	}
	f.now = f.now.Add(10*time.Minute + time.Nanosecond)
	f.register("a2")
	if n := len(f.reg.nonces); n != 1 || len(f.reg.nonceQ) != 1 {
		t.Fatalf("%d nonces remembered after the window passed, want 1", n)
	}
}

func TestNowNeverGoesBack(t *testing.T) {
	f := newFixture(t, 26, 1, 1)
	f.register("a1")
	f.now = f.now.Add(time.Hour)
	f.mustApply(&QuarantineAgent{Name: "a1"}, f.ops[0])
	// A command issued at the old time, applied with an old `now`, is judged against the later now.
	f.now = t0
	c := f.cmd(&ReleaseAgent{Name: "a1"}, f.ops[0])
	wantErr(t, f.applyCmd(c), ErrStale)
}

func TestSnapshotKeepsNoncesAndLimits(t *testing.T) {
	f := newFixture(t, 27, 1, 1)
	f.register("a1")
	c := f.cmd(&QuarantineAgent{Name: "a1"}, f.ops[0])
	if err := f.applyCmd(c); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := f.reg.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r, err := ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	f.reg = r
	wantErr(t, f.applyCmd(c), ErrReplay)
	if r.Limits() != DefaultLimits() || r.RevokeQuorum() != DefaultRevokeQuorum || !r.Initialised() {
		t.Fatal("restored settings")
	}
	custom, err := NewRegistryWithLimits(Limits{MaxCommandAge: time.Minute, MaxClockSkew: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	_ = custom.WriteSnapshot(&buf)
	r2, err := ReadSnapshot(&buf)
	if err != nil || r2.Limits().MaxCommandAge != time.Minute || r2.Hash() != custom.Hash() || r2.Hash() == NewRegistry().Hash() {
		t.Fatalf("limits not in snapshot: %v", err)
	}
	if _, err := NewRegistryWithLimits(Limits{}); err == nil {
		t.Fatal("zero limits accepted")
	}
}

func TestVerifyConcurrent(t *testing.T) {
	f := newFixture(t, 28, 1, 1)
	c := f.cmd(&RegisterAgent{Name: "a", Key: mustKey(t, f.rnd).Public(), ExpiresAt: f.now.Add(time.Hour)}, f.ops[0])
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := c.Verify(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
