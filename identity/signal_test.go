package identity

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func sampleSignal(t testing.TB, rnd *rand.ChaCha8, cl ClusterID, name string, subject PublicKey) Signal {
	t.Helper()
	s := Signal{ClusterID: cl, Subject: SignalSubject{name, subject}, Detector: "lstm", Score: 0.97,
		EvidenceDigest: sha256.Sum256([]byte(name)), ObservedAt: t0}
	if err := s.Sign(mustKey(t, rnd), rnd); err != nil {
		t.Fatal(err)
	}
	return s
}

// signal returns a signal by reporter about agent name/key observed at at.
func (f *fixture) signal(reporter PrivateKey, name string, key PublicKey, at time.Time) Signal {
	f.t.Helper()
	s := Signal{ClusterID: f.cluster, Subject: SignalSubject{name, key}, Detector: "ngram", Score: 0.9,
		EvidenceDigest: sha256.Sum256([]byte("evidence")), ObservedAt: at}
	if err := s.Sign(reporter, f.rnd); err != nil {
		f.t.Fatal(err)
	}
	return s
}

func TestSignalRoundTripAndVerify(t *testing.T) {
	rnd := seeded(7)
	cl, _ := NewClusterID(rnd)
	s := sampleSignal(t, rnd, cl, "agent-a", mustKey(t, rnd).Public())
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
	enc := s.Encode()
	if len(enc) > MaxSignalSize {
		t.Fatalf("%d bytes > MaxSignalSize %d", len(enc), MaxSignalSize)
	}
	d, err := DecodeSignal(enc)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Verify(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Encode(), enc) {
		t.Fatal("re-encoding differs")
	}
	// A signature never verifies as a command signature or vice versa (domain separation).
	if bytes.HasPrefix(s.SigningBytes(), []byte(signingDomain)) {
		t.Fatal("signal and command domains collide")
	}
	// Longest possible signal fits MaxSignalSize exactly.
	long := s
	long.Subject.Name = string(bytes.Repeat([]byte("a"), MaxNameLen))
	long.Detector = string(bytes.Repeat([]byte("d"), MaxDetectorLen))
	if n := len(long.Encode()); n != MaxSignalSize {
		t.Fatalf("longest signal is %d bytes, MaxSignalSize %d", n, MaxSignalSize)
	}
}

func TestSignalRejections(t *testing.T) {
	rnd := seeded(8)
	cl, _ := NewClusterID(rnd)
	good := sampleSignal(t, rnd, cl, "agent-a", mustKey(t, rnd).Public())
	mut := func(f func(s *Signal)) Signal { s := good.Clone(); f(&s); return s }
	cases := []struct {
		name string
		s    Signal
		want error
	}{
		{"score tampered", mut(func(s *Signal) { s.Score = 0.1 }), ErrBadSignature},
		{"subject tampered", mut(func(s *Signal) { s.Subject.Name = "agent-b" }), ErrBadSignature},
		{"observed-at tampered", mut(func(s *Signal) { s.ObservedAt = s.ObservedAt.Add(time.Second) }), ErrBadSignature},
		{"reporter swapped", mut(func(s *Signal) { s.Reporter = mustKey(t, rnd).Public() }), ErrBadSignature},
		{"cluster swapped", mut(func(s *Signal) { s.ClusterID[0] ^= 1 }), ErrBadSignature},
		{"short signature", mut(func(s *Signal) { s.Signature = s.Signature[:10] }), ErrBadSignature},
		{"score NaN", mut(func(s *Signal) { s.Score = math.NaN() }), ErrInvalid},
		{"score above 1", mut(func(s *Signal) { s.Score = 1.5 }), ErrInvalid},
		{"score negative zero", mut(func(s *Signal) { s.Score = math.Copysign(0, -1) }), ErrInvalid},
		{"empty detector", mut(func(s *Signal) { s.Detector = "" }), ErrInvalid},
		{"detector with space", mut(func(s *Signal) { s.Detector = "a b" }), ErrInvalid},
		{"bad subject name", mut(func(s *Signal) { s.Subject.Name = "Bad Name" }), ErrInvalid},
		{"zero cluster", mut(func(s *Signal) { s.ClusterID = ClusterID{} }), ErrInvalid},
		{"zero observed-at", mut(func(s *Signal) { s.ObservedAt = time.Time{} }), ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.s.Verify(), tc.want) })
	}

	enc := good.Encode()
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"truncated", enc[:len(enc)-1], ErrMalformed},
		{"trailing", append(bytes.Clone(enc), 0), ErrMalformed},
		{"oversized", make([]byte, MaxSignalSize+1), ErrTooLarge},
		{"bad version", append([]byte{9}, enc[1:]...), ErrMalformed},
	} {
		t.Run("decode "+tc.name, func(t *testing.T) {
			_, err := DecodeSignal(tc.b)
			wantErr(t, err, tc.want)
		})
	}

	if err := good.FreshAt(t0.Add(10*time.Minute), 10*time.Minute, time.Minute); err != nil {
		t.Fatalf("edge of window: %v", err)
	}
	wantErr(t, good.FreshAt(t0.Add(10*time.Minute+1), 10*time.Minute, time.Minute), ErrStale)
	wantErr(t, good.FreshAt(t0.Add(-time.Minute-1), 10*time.Minute, time.Minute), ErrFromFuture)
}

// TestAutoRevokeEvidence: the FSM counts only fresh signals about this agent's current key from
// distinct admitted nodes, and refuses the whole command on any bad signal.
func TestAutoRevokeEvidence(t *testing.T) {
	f := newFixture(t, 91, 2, 2)
	n2, n3 := mustKey(t, f.rnd), mustKey(t, f.rnd)
	f.mustApply(&AdmitNode{Node: NodeEntry{Name: "node-2", Key: n2.Public()}}, f.ops[0])
	f.mustApply(&AdmitNode{Node: NodeEntry{Name: "node-3", Key: n3.Public()}}, f.ops[0])
	vk := f.register("victim")
	other := f.register("bystander")
	f.mustApply(&SetAutomatedResponse{Enabled: true}, f.ops[0])
	stranger := mustKey(t, f.rnd)
	n1 := f.nodes[0]
	sig := func(k PrivateKey) Signal { return f.signal(k, "victim", vk.Public(), f.now) }
	auto := func(ss ...Signal) *AutoRevokeAgent {
		return &AutoRevokeAgent{Name: "victim", Reason: "anomaly", Signals: ss}
	}
	forged := sig(n2)
	forged.Score = 1 // changed after signing

	cases := []struct {
		name string
		p    *AutoRevokeAgent
		want error
	}{
		{"quorum minus one", auto(sig(n1)), ErrInsufficientSignatures},
		{"duplicate reporter counted once", auto(sig(n1), sig(n1)), ErrInsufficientSignatures},
		{"stale signal", auto(sig(n1), f.signal(n2, "victim", vk.Public(), f.now.Add(-11*time.Minute))), ErrStale},
		{"signal from the future", auto(sig(n1), f.signal(n2, "victim", vk.Public(), f.now.Add(2*time.Minute))), ErrFromFuture},
		{"signal for another agent", auto(sig(n1), f.signal(n2, "bystander", other.Public(), f.now)), ErrInvalid},
		{"signal naming another key", auto(sig(n1), f.signal(n2, "victim", other.Public(), f.now)), ErrInvalid},
		{"unadmitted reporter", auto(sig(n1), sig(stranger)), ErrUnauthorized},
		{"operator as reporter", auto(sig(n1), sig(f.ops[0])), ErrUnauthorized},
		{"forged signal", auto(sig(n1), forged), ErrBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.reg.Hash()
			wantErr(t, f.apply(tc.p, n1), tc.want)
			if f.reg.Hash() != before {
				t.Fatal("rejected automated revocation changed the state")
			}
		})
	}
	// Too many signals is refused at decode, before allocation.
	many := make([]Signal, MaxAutoRevokeSignals+1)
	for i := range many {
		many[i] = sig(n1)
	}
	if _, err := NewCommand(f.cluster, auto(many...), f.now, f.rnd); err == nil {
		t.Fatal("17 signals accepted")
	}
	// Signals from another cluster.
	wrong := sig(n2)
	wrong.ClusterID[0] ^= 1
	wrong.Sign(n2, f.rnd)
	wantErr(t, f.apply(auto(sig(n1), wrong), n1), ErrWrongCluster)

	// Two distinct admitted reporters, fresh: revoked, and the audit names them.
	f.now = f.now.Add(time.Minute)
	fresh := auto(sig(n1), sig(n2))
	f.mustApply(fresh, n3)
	a, _ := f.reg.Agent("victim")
	if a.Status != StatusRevoked {
		t.Fatalf("status %s", a.Status)
	}
	if got := f.reg.Audit(AuditQuery{Principal: "victim"}); len(got) == 0 || !bytes.Contains([]byte(got[len(got)-1].Detail), []byte("node-1, node-2")) {
		t.Fatalf("audit detail does not name the reporters: %+v", got)
	}
}

func FuzzDecodeSignal(f *testing.F) {
	rnd := seeded(14)
	cl, _ := NewClusterID(rnd)
	s := sampleSignal(f, rnd, cl, "agent-a", mustKey(f, rnd).Public())
	f.Add(s.Encode())
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSignal(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode error without ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(s.Encode(), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
		_ = s.Verify()
	})
}

// TestCheckRevocation: the read-only check a node runs on a revocation received by gossip.
func TestCheckRevocation(t *testing.T) {
	f := newFixture(t, 92, 1, 1)
	n2 := mustKey(t, f.rnd)
	f.mustApply(&AdmitNode{Node: NodeEntry{Name: "node-2", Key: n2.Public()}}, f.ops[0])
	vk := f.register("victim")
	verified := func(c *Command) *VerifiedCommand {
		v, err := c.Verify()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, err := f.reg.CheckRevocation(verified(f.cmd(&RevokeAgent{Name: "victim", Reason: "x"}, f.ops[0])), f.now)
	if err != nil || a.Name != "victim" || a.ID != vk.ID() {
		t.Fatalf("operator revocation: %+v %v", a, err)
	}
	stale := f.cmd(&RevokeAgent{Name: "victim"})
	stale.IssuedAt = f.now.Add(-11 * time.Minute)
	stale.Sign(f.ops[0])
	sig := func(k PrivateKey) Signal { return f.signal(k, "victim", vk.Public(), f.now) }
	cases := []struct {
		name string
		c    *Command
		want error
	}{
		{"node signs an operator revocation", f.cmd(&RevokeAgent{Name: "victim"}, f.nodes[0]), ErrUnauthorized},
		{"stale", stale, ErrStale},
		{"unknown agent", f.cmd(&RevokeAgent{Name: "nobody"}, f.ops[0]), ErrNotFound},
		{"not a revocation", f.cmd(&ReleaseAgent{Name: "victim"}, f.ops[0]), ErrInvalid},
		{"automated while disabled", f.cmd(&AutoRevokeAgent{Name: "victim", Signals: []Signal{sig(f.nodes[0]), sig(n2)}}, f.nodes[0]), ErrUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.reg.CheckRevocation(verified(tc.c), f.now)
			wantErr(t, err, tc.want)
		})
	}
	f.mustApply(&SetAutomatedResponse{Enabled: true}, f.ops[0])
	_, err = f.reg.CheckRevocation(verified(f.cmd(&AutoRevokeAgent{Name: "victim", Signals: []Signal{sig(f.nodes[0])}}, f.nodes[0])), f.now)
	wantErr(t, err, ErrInsufficientSignatures)
	if _, err := f.reg.CheckRevocation(verified(f.cmd(&AutoRevokeAgent{Name: "victim", Signals: []Signal{sig(f.nodes[0]), sig(n2)}}, f.nodes[0])), f.now); err != nil {
		t.Fatalf("automated revocation with quorum: %v", err)
	}
	h := f.reg.Hash()
	_, _ = f.reg.CheckRevocation(verified(f.cmd(&RevokeAgent{Name: "victim"}, f.ops[0])), f.now)
	if f.reg.Hash() != h {
		t.Fatal("CheckRevocation changed the registry")
	}
}
