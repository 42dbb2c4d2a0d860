package identity

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// seeded returns a deterministic io.Reader for keys and nonces.
func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	t       testing.TB
	rnd     *rand.ChaCha8
	cluster ClusterID
	ops     []PrivateKey
	nodes   []PrivateKey
	reg     *Registry
	now     time.Time
}

func mustKey(t testing.TB, rnd *rand.ChaCha8) PrivateKey {
	t.Helper()
	k, err := GenerateKey(rnd)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newFixture creates a registry with nOps operators, threshold m and one node, genesis applied.
func newFixture(t testing.TB, seed uint64, nOps, m int) *fixture {
	t.Helper()
	f := &fixture{t: t, rnd: seeded(seed), reg: NewRegistry(), now: t0}
	var err error
	if f.cluster, err = NewClusterID(f.rnd); err != nil {
		t.Fatal(err)
	}
	g := &Genesis{ClusterID: f.cluster, TrustDomain: "example.org", Threshold: m}
	for i := range nOps {
		k := mustKey(t, f.rnd)
		f.ops = append(f.ops, k)
		g.Operators = append(g.Operators, OperatorEntry{Name: "op" + string(rune('a'+i)), Key: k.Public()})
	}
	nk := mustKey(t, f.rnd)
	f.nodes = append(f.nodes, nk)
	g.Nodes = []NodeEntry{{Name: "node-1", Key: nk.Public(), Site: "site-a", Voter: true,
		Addrs: []string{"/ip4/127.0.0.1/tcp/7400"}}}
	if err := f.apply(g, f.ops[:m]...); err != nil {
		t.Fatalf("genesis: %v", err)
	}
	return f
}

func (f *fixture) cmd(p Payload, signers ...PrivateKey) *Command {
	f.t.Helper()
	c, err := NewCommand(f.cluster, p, f.now, f.rnd)
	if err != nil {
		f.t.Fatalf("NewCommand(%T): %v", p, err)
	}
	for _, k := range signers {
		c.Sign(k)
	}
	return c
}

func (f *fixture) applyCmd(c *Command) error {
	f.t.Helper()
	v, err := c.Verify()
	if err != nil {
		return err
	}
	return f.reg.Apply(v, f.now)
}

func (f *fixture) apply(p Payload, signers ...PrivateKey) error {
	f.t.Helper()
	return f.applyCmd(f.cmd(p, signers...))
}

func (f *fixture) mustApply(p Payload, signers ...PrivateKey) {
	f.t.Helper()
	if err := f.apply(p, signers...); err != nil {
		f.t.Fatalf("apply %s: %v", p.Kind(), err)
	}
}

// register registers agent name with a fresh key and returns the key.
func (f *fixture) register(name string) PrivateKey {
	f.t.Helper()
	k := mustKey(f.t, f.rnd)
	f.mustApply(&RegisterAgent{Name: name, Key: k.Public(), ExpiresAt: f.now.Add(time.Hour),
		Labels: map[string]string{"site": "a"}, Capabilities: []string{"send:b", "call:x"}}, f.ops[0])
	return k
}

func wantErr(t testing.TB, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("got error %v, want %v", err, sentinel)
	}
}
