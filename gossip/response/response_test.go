package response

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fix struct {
	t       *testing.T
	rnd     io.Reader
	cluster identity.ClusterID
	nodes   []identity.PrivateKey
	agent   identity.SignalSubject
}

func newFix(t *testing.T, n int) *fix {
	var seed [32]byte
	seed[0] = byte(n)
	f := &fix{t: t, rnd: rand.NewChaCha8(seed)}
	f.cluster, _ = identity.NewClusterID(f.rnd)
	for range n {
		k, _ := identity.GenerateKey(f.rnd)
		f.nodes = append(f.nodes, k)
	}
	ak, _ := identity.GenerateKey(f.rnd)
	f.agent = identity.SignalSubject{Name: "agent-a", Key: ak.Public()}
	return f
}

func (f *fix) sig(reporter int, at time.Time, score float64) identity.Signal {
	s := identity.Signal{ClusterID: f.cluster, Subject: f.agent, Detector: "ngram", Score: score, ObservedAt: at}
	if err := s.Sign(f.nodes[reporter], f.rnd); err != nil {
		f.t.Fatal(err)
	}
	return s
}

func mustNew(t *testing.T, cfg Config) *Aggregator {
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLadder(t *testing.T) {
	f := newFix(t, 3)
	a := mustNew(t, DefaultConfig())
	now := t0
	d := a.Observe(f.sig(0, now, 0.9), now)
	if d.Action != Alert || !d.Changed || d.Reporters != 1 {
		t.Fatalf("first signal: %+v", d)
	}
	a.Observe(f.sig(0, now, 0.9), now)
	d = a.Observe(f.sig(0, now, 0.9), now)
	if d.Action != Throttle || d.Until != now.Add(15*time.Minute) || d.Rate != 1 || d.Burst != 5 {
		t.Fatalf("three signals from one reporter: %+v", d)
	}
	// A signal below MinScore counts for nothing.
	if d := a.Observe(f.sig(1, now, 0.2), now); d.Reporters != 1 {
		t.Fatalf("low score counted: %+v", d)
	}
	d = a.Observe(f.sig(1, now, 0.8), now)
	if d.Action != Revoke || len(d.Evidence) != 2 || d.Evidence[0].Reporter == d.Evidence[1].Reporter {
		t.Fatalf("two reporters with quorum 2: %+v", d)
	}
	if !d.Changed {
		t.Fatal("revoke not marked changed")
	}
	if d := a.Evaluate(f.agent, now); d.Changed {
		t.Fatal("the same revoke decided twice is not a change")
	}
	// Ten minutes later everything has left the window.
	if d := a.Evaluate(f.agent, now.Add(10*time.Minute)); d.Action != None || d.Reporters != 0 {
		t.Fatalf("stale signals still count: %+v", d)
	}
}

func TestDuplicatesAndWindow(t *testing.T) {
	f := newFix(t, 2)
	a := mustNew(t, DefaultConfig())
	s := f.sig(0, t0, 0.9)
	for range 5 {
		a.Observe(s, t0)
	}
	if d := a.Evaluate(f.agent, t0); d.Signals != 1 {
		t.Fatalf("one signal observed five times counts %d", d.Signals)
	}
	if d := a.Observe(f.sig(1, t0.Add(-6*time.Minute), 0.9), t0); d.Reporters != 1 {
		t.Fatal("an out-of-window signal counted")
	}
	if d := a.Observe(f.sig(1, t0.Add(2*time.Minute), 0.9), t0); d.Reporters != 1 {
		t.Fatal("a signal from the future counted")
	}
}

// TestCompromisedMinorityNeverRevokes: revoke_quorum − 1 nodes signing at full rate, for an
// hour of simulated time, never reach Revoke; one honest node more does.
func TestCompromisedMinorityNeverRevokes(t *testing.T) {
	for _, q := range []int{2, 3, 5} {
		f := newFix(t, q)
		cfg := DefaultConfig()
		cfg.RevokeQuorum = q
		cfg.Ladder[len(cfg.Ladder)-1] = Step{Revoke, q, q}
		cfg.EscalateAfter = 1
		a := mustNew(t, cfg)
		now := t0
		for i := range 3600 {
			now = now.Add(time.Second)
			d := a.Observe(f.sig(i%(q-1), now, 1), now)
			if d.Action == Revoke || len(d.Evidence) != 0 {
				t.Fatalf("quorum %d: %d compromised nodes revoked at step %d: %+v", q, q-1, i, d)
			}
		}
		d := a.Observe(f.sig(q-1, now, 1), now)
		if d.Action != Revoke || len(d.Evidence) != q {
			t.Fatalf("quorum %d reached, no revoke: %+v", q, d)
		}
	}
}

func TestEscalationAndDryRun(t *testing.T) {
	f := newFix(t, 3)
	cfg := DefaultConfig()
	cfg.Ladder = []Step{{Alert, 1, 1}, {Quarantine, 2, 2}, {Revoke, 3, 3}}
	cfg.EscalateAfter = 2
	cfg.Window = time.Hour
	cfg.QuarantineTTL = time.Minute
	cfg.DryRun = true
	a := mustNew(t, cfg)
	now := t0
	a.Observe(f.sig(0, now, 0.9), now)
	d := a.Observe(f.sig(1, now, 0.9), now)
	if d.Action != Quarantine || !d.DryRun || !d.Changed {
		t.Fatalf("two reporters: %+v", d)
	}
	now = now.Add(30 * time.Second)
	if d := a.Evaluate(f.agent, now); d.Action != Quarantine || d.Changed {
		t.Fatalf("inside the TTL: %+v", d)
	}
	now = now.Add(time.Minute) // the first quarantine expired: a second one starts
	if d := a.Evaluate(f.agent, now); d.Action != Quarantine || !d.Changed {
		t.Fatalf("renewed quarantine: %+v", d)
	}
	now = now.Add(2 * time.Minute)
	d = a.Evaluate(f.agent, now)
	if d.Action != Revoke || !d.Escalated || len(d.Evidence) != 2 {
		t.Fatalf("after two quarantines: %+v", d)
	}
}

// TestThrottleTTL: a throttle lasts ThrottleTTL (QuarantineTTL when 0), carries the rate and
// burst, and is renewed only once it has run out; a quarantine keeps its own TTL.
func TestThrottleTTL(t *testing.T) {
	f := newFix(t, 2)
	cfg := DefaultConfig()
	cfg.Window = time.Hour
	cfg.QuarantineTTL = 10 * time.Minute
	cfg.ThrottleTTL = time.Minute
	cfg.ThrottleRate, cfg.ThrottleBurst = 0.5, 2
	cfg.RevokeQuorum, cfg.Ladder[3] = 3, Step{Revoke, 3, 3}
	a := mustNew(t, cfg)
	now := t0
	var d Decision
	for range 3 {
		d = a.Observe(f.sig(0, now, 0.9), now)
	}
	if d.Action != Throttle || !d.Changed || d.Until != now.Add(time.Minute) || d.Rate != 0.5 || d.Burst != 2 {
		t.Fatalf("throttle: %+v", d)
	}
	later := now.Add(30 * time.Second)
	if d := a.Observe(f.sig(0, later, 0.9), later); d.Changed || d.Until != now.Add(time.Minute) {
		t.Fatalf("inside the throttle TTL: %+v", d)
	}
	later = now.Add(time.Minute)
	if d := a.Observe(f.sig(0, later, 0.9), later); !d.Changed || d.Until != later.Add(time.Minute) {
		t.Fatalf("renewed after the TTL: %+v", d)
	}
	d = a.Observe(f.sig(1, later, 0.9), later)
	if d.Action != Quarantine || d.Until != later.Add(10*time.Minute) || d.Rate != 0 || d.Burst != 0 {
		t.Fatalf("quarantine: %+v", d)
	}

	cfg.ThrottleTTL = 0 // follows quarantine_ttl
	a = mustNew(t, cfg)
	for range 3 {
		d = a.Observe(f.sig(0, now, 0.9), now)
	}
	if d.Action != Throttle || d.Until != now.Add(10*time.Minute) {
		t.Fatalf("throttle with ThrottleTTL 0: %+v", d)
	}
}

func TestBoundedMemory(t *testing.T) {
	f := newFix(t, 1)
	cfg := DefaultConfig()
	cfg.MaxAgents = 50
	cfg.MaxPerReporter = 4
	a := mustNew(t, cfg)
	for i := range 500 {
		f.agent.Name = "agent-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		for range 10 {
			a.Observe(f.sig(0, t0, 0.9), t0)
		}
		if a.Len() > 50 {
			t.Fatalf("%d agents tracked, max 50", a.Len())
		}
		if d := a.Evaluate(f.agent, t0); d.Signals > 4 {
			t.Fatalf("%d signals kept per reporter, max 4", d.Signals)
		}
	}
	a.Prune(t0.Add(time.Hour))
	if a.Len() != 0 {
		t.Fatalf("%d agents left after every signal expired", a.Len())
	}
}

func TestConfigValidate(t *testing.T) {
	cases := map[string]func(*Config){
		"window":              func(c *Config) { c.Window = 0 },
		"min_score":           func(c *Config) { c.MinScore = 2 },
		"ladder empty":        func(c *Config) { c.Ladder = nil },
		"ladder order":        func(c *Config) { c.Ladder = []Step{{Throttle, 1, 1}, {Alert, 1, 1}} },
		"revoke below quorum": func(c *Config) { c.RevokeQuorum = 3 },
		"quarantine_ttl":      func(c *Config) { c.QuarantineTTL = -1 },
		"throttle_ttl":        func(c *Config) { c.ThrottleTTL = -time.Second },
		"throttle_ttl long":   func(c *Config) { c.ThrottleTTL = 800 * time.Hour },
		"throttle_rate zero":  func(c *Config) { c.ThrottleRate = 0 },
		"throttle_rate nan":   func(c *Config) { c.ThrottleRate = math.NaN() },
		"throttle_rate high":  func(c *Config) { c.ThrottleRate = 1e6 },
		"throttle_burst":      func(c *Config) { c.ThrottleBurst = 0 },
		"throttle_burst high": func(c *Config) { c.ThrottleBurst = MaxThrottleBurst + 1 },
		"revoke_quorum":       func(c *Config) { c.RevokeQuorum = 0 },
	}
	for name, mut := range cases {
		c := DefaultConfig()
		mut(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
		if field, _, _ := strings.Cut(name, " "); strings.HasPrefix(name, "throttle_") && !strings.Contains(fmt.Sprint(err), "response: "+field+":") {
			t.Errorf("%s: error does not name the field: %v", name, err)
		}
	}
	if _, err := ParseAction("ban"); err == nil {
		t.Fatal("unknown action parsed")
	}
}

func TestSetRevokeQuorum(t *testing.T) {
	f := newFix(t, 3)
	a := mustNew(t, DefaultConfig())
	if err := a.SetRevokeQuorum(3); err != nil {
		t.Fatal(err)
	}
	a.Observe(f.sig(0, t0, 0.9), t0)
	if d := a.Observe(f.sig(1, t0, 0.9), t0); d.Action == Revoke {
		t.Fatal("two reporters revoked under quorum 3")
	}
	if d := a.Observe(f.sig(2, t0, 0.9), t0); d.Action != Revoke || len(d.Evidence) != 3 {
		t.Fatalf("three reporters under quorum 3: %+v", d)
	}
	if err := a.SetRevokeQuorum(0); err == nil {
		t.Fatal("quorum 0 accepted")
	}
}

// TestAggregatorMatchesNaiveModel: over random signal streams, Reporters and Signals equal a
// naive recount of the fresh, distinct, above-threshold signals (while under MaxPerReporter),
// and Revoke appears exactly when the distinct reporters reach the quorum.
func TestAggregatorMatchesNaiveModel(t *testing.T) {
	f := newFix(t, 5)
	cfg := DefaultConfig()
	cfg.MaxPerReporter = 1024
	cfg.EscalateAfter = 0
	a := mustNew(t, cfg)
	rng := rand.New(rand.NewPCG(7, 8))
	var seen []identity.Signal
	now := t0
	for i := range 3000 {
		now = now.Add(time.Duration(rng.IntN(2000)) * time.Millisecond)
		var s identity.Signal
		if len(seen) > 0 && rng.IntN(5) == 0 {
			s = seen[rng.IntN(len(seen))] // a replay
		} else {
			at := now.Add(-time.Duration(rng.IntN(400)) * time.Second)
			s = f.sig(rng.IntN(5), at, rng.Float64())
			seen = append(seen, s)
		}
		d := a.Observe(s, now)
		reps := map[identity.PublicKey]bool{}
		nonces := map[[16]byte]bool{}
		for _, x := range seen {
			if x.Score < cfg.MinScore || x.ObservedAt.Before(now.Add(-cfg.Window)) || x.ObservedAt.After(now.Add(cfg.MaxSkew)) {
				continue
			}
			reps[x.Reporter], nonces[x.Nonce] = true, true
		}
		if d.Reporters != len(reps) || d.Signals != len(nonces) {
			t.Fatalf("step %d: aggregator %d reporters / %d signals, model %d / %d", i, d.Reporters, d.Signals, len(reps), len(nonces))
		}
		if (d.Action == Revoke) != (len(reps) >= cfg.RevokeQuorum) {
			t.Fatalf("step %d: action %s with %d reporters, quorum %d", i, d.Action, len(reps), cfg.RevokeQuorum)
		}
	}
}

// TestLift: a lift ends a quarantine and forgets the signals counted so far: replays of them are
// still duplicates and count nothing, so a third reporter's signal right after the lift does not
// reach the revoke quorum together with the lifted ones; fresh signals climb the ladder again
// from the bottom. A revoke is refused and changes nothing; an unknown agent is refused.
func TestLift(t *testing.T) {
	f := newFix(t, 3)
	cfg := DefaultConfig()
	cfg.RevokeQuorum = 3
	cfg.Ladder = []Step{{Alert, 1, 1}, {Throttle, 1, 3}, {Quarantine, 2, 2}, {Revoke, 3, 3}}
	a := mustNew(t, cfg)
	now := t0
	s0, s1 := f.sig(0, now, 0.9), f.sig(1, now, 0.9)
	a.Observe(s0, now)
	if d := a.Observe(s1, now); d.Action != Quarantine || !d.Changed {
		t.Fatalf("two reporters: %+v", d)
	}
	now = now.Add(time.Minute)
	if st := a.State(f.agent, now); st.Action != Quarantine || !st.Running || st.Signals != 2 || !st.Until.Equal(t0.Add(cfg.QuarantineTTL)) {
		t.Fatalf("state before the lift: %+v", st)
	}
	before, err := a.Lift(f.agent, now)
	if err != nil || before.Action != Quarantine || !before.Running || before.Signals != 2 {
		t.Fatalf("lift: %+v %v", before, err)
	}
	if st := a.State(f.agent, now); st != (State{}) {
		t.Fatalf("state after the lift: %+v", st)
	}
	// Replays of the lifted signals are duplicates: nothing counts, nothing changes.
	for _, s := range []identity.Signal{s0, s1, s0} {
		if d := a.Observe(s, now); d.Action != None || d.Changed || d.Signals != 0 {
			t.Fatalf("replayed lifted signal counted: %+v", d)
		}
	}
	// A third reporter alone is one reporter, not the revoke quorum with the lifted two.
	if d := a.Observe(f.sig(2, now, 0.9), now); d.Action != Alert || d.Reporters != 1 || d.Signals != 1 || !d.Changed {
		t.Fatalf("first fresh signal after the lift: %+v", d)
	}
	if d := a.Observe(f.sig(0, now, 0.9), now); d.Action != Quarantine || d.Reporters != 2 || !d.Changed {
		t.Fatalf("a fresh quorum quarantines again: %+v", d)
	}
	if d := a.Observe(f.sig(1, now, 0.9), now); d.Action != Revoke || len(d.Evidence) != 3 {
		t.Fatalf("three fresh reporters: %+v", d)
	}
	for _, e := range a.agents[f.agent].byReporter {
		for _, x := range e {
			if x.sig.Nonce == s0.Nonce || x.sig.Nonce == s1.Nonce {
				t.Fatal("a lifted signal is held again")
			}
		}
	}
	// A revoke is not lifted: refused, nothing forgotten.
	st := a.State(f.agent, now)
	if _, err := a.Lift(f.agent, now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("lift of a revoke: %v", err)
	}
	if after := a.State(f.agent, now); after != st || after.Action != Revoke || after.Signals != 3 {
		t.Fatalf("refused lift changed the state: %+v → %+v", st, after)
	}
	other := identity.SignalSubject{Name: "other", Key: f.nodes[0].Public()}
	if _, err := a.Lift(other, now); !errors.Is(err, ErrNothingToLift) {
		t.Fatalf("lift of an unknown agent: %v", err)
	}
	if a.Len() != 1 {
		t.Fatalf("a refused lift added an agent: %d tracked", a.Len())
	}
}

// TestLiftMemory: lifted signals are kept only while they are inside the window (then a replay
// is stale anyway), and an agent held only for them is pruned after that.
func TestLiftMemory(t *testing.T) {
	f := newFix(t, 2)
	cfg := DefaultConfig()
	cfg.MaxPerReporter = 2
	cfg.RevokeQuorum = 3
	cfg.Ladder = []Step{{Alert, 1, 1}, {Quarantine, 2, 2}, {Revoke, 3, 3}}
	a := mustNew(t, cfg)
	now := t0
	var sigs []identity.Signal
	for i := range 10 { // 10 quarantines lifted: 10 signals of reporter 0 lifted, 8 remembered
		s0, s1 := f.sig(0, now, 0.9), f.sig(1, now, 0.9)
		sigs = append(sigs, s0)
		a.Observe(s0, now)
		if d := a.Observe(s1, now); d.Action != Quarantine {
			t.Fatalf("round %d: %+v", i, d)
		}
		if _, err := a.Lift(f.agent, now); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	if n := len(a.agents[f.agent].spent[f.nodes[0].Public()]); n != 4*cfg.MaxPerReporter {
		t.Fatalf("lifted signals held per reporter: %d, want the bound %d", n, 4*cfg.MaxPerReporter)
	}
	if d := a.Observe(sigs[9], now); d.Signals != 0 {
		t.Fatalf("the newest lifted signal counted again: %+v", d)
	}
	a.Prune(now.Add(cfg.Window - time.Second))
	if a.Len() != 1 {
		t.Fatal("an agent with lifted signals inside the window was pruned")
	}
	a.Prune(now.Add(cfg.Window + time.Second))
	if a.Len() != 0 {
		t.Fatalf("%d agents held after the lifted signals left the window", a.Len())
	}
}
