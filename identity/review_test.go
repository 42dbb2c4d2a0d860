package identity

import (
	"bytes"
	"fmt"
	"math/big"
	"testing"
	"time"
)

// Regression tests from the adversarial review of the registry.

// weakKeys are encodings that crypto/ed25519 accepts as public keys but that nobody owns:
// small-order points (anyone can forge their signatures) and non-canonical encodings.
func weakKeys() map[string]PublicKey {
	mk := func(b ...byte) PublicKey {
		var k PublicKey
		copy(k.b[:], b)
		return k
	}
	ff := func(first, last byte) PublicKey { // first, 30 × 0xff, last
		var k PublicKey
		for i := range k.b {
			k.b[i] = 0xff
		}
		k.b[0], k.b[31] = first, last
		return k
	}
	signed := func(k PublicKey) PublicKey { k.b[31] |= 0x80; return k }
	return map[string]PublicKey{
		"identity (order 1)":              mk(1),
		"identity non-canonical y=p+1":    ff(0xee, 0x7f),
		"identity with x sign bit":        signed(mk(1)),
		"order 2 (y=p-1)":                 ff(0xec, 0x7f),
		"order 4 (y=0, sign)":             signed(PublicKey{}),
		"order 4 non-canonical (y=p)":     ff(0xed, 0x7f),
		"order 8":                         mk(0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05),
		"order 8 (other)":                 mk(0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a),
		"non-canonical y=p+2 (high bits)": ff(0xef, 0x7f),
	}
}

// TestReviewStrongKey: real keys pass; every weak encoding fails.
func TestReviewStrongKey(t *testing.T) {
	rnd := seeded(500)
	for range 64 {
		if k := mustKey(t, rnd).Public(); !strongKey(k) {
			t.Fatalf("generated key %x judged weak", k.b)
		}
	}
	for name, k := range weakKeys() {
		if strongKey(k) || refStrongKey(k) {
			t.Errorf("%s: %x judged strong", name, k.b)
		}
	}
	// The table of small-order y values agrees with computing [8]P, for every y below 64 and
	// above p−64 (both signs) and for random on-curve encodings.
	var k PublicKey
	for i := range 4 * 64 {
		k = PublicKey{}
		if i&64 != 0 {
			for j := range k.b {
				k.b[j] = 0xff
			}
			k.b[0], k.b[31] = 0xed-byte(i&63), 0x7f
		} else {
			k.b[0] = byte(i & 63)
		}
		if i&128 != 0 {
			k.b[31] |= 0x80
		}
		if refStrongKey(k) && !strongKey(k) {
			t.Errorf("%x: strong by reference, refused by the table", k.b)
		}
		if !refStrongKey(k) && strongKey(k) && refOnCurve(k) {
			t.Errorf("%x: weak by reference, accepted by the table", k.b)
		}
	}
}

// refOnCurve reports whether k decodes to a point (canonical or not).
func refOnCurve(k PublicKey) bool {
	var be [32]byte
	for i := range be {
		be[i] = k.b[31-i]
	}
	be[0] &= 0x7f
	y := new(big.Int).SetBytes(be[:])
	y2 := new(big.Int).Mul(y, y)
	u := new(big.Int).Sub(y2, big.NewInt(1))
	v := new(big.Int).Add(new(big.Int).Mul(edD, y2), big.NewInt(1))
	v.Mod(v, edP).ModInverse(v, edP)
	u.Mul(u, v).Mod(u, edP)
	return new(big.Int).ModSqrt(u, edP) != nil
}

// TestReviewWeakKeyForgeable documents why weak keys matter: a signature for the identity point
// (R = identity, S = 0) verifies for any message under both of its encodings.
func TestReviewWeakKeyForgeable(t *testing.T) {
	forged := make([]byte, 64)
	forged[0] = 1
	keys := weakKeys()
	for _, name := range []string{"identity (order 1)", "identity non-canonical y=p+1"} {
		if !keys[name].Verify([]byte("any message at all"), forged) {
			t.Fatalf("%s: forged signature does not verify (premise of the weak-key check)", name)
		}
	}
}

// TestReviewWeakKeysRefused: no route lets a weak key into the registry (before the fix one
// operator could admit two "nodes" whose signatures anyone can forge, then forge an automated
// revocation with them, or list one point twice under two encodings).
func TestReviewWeakKeysRefused(t *testing.T) {
	for name, wk := range weakKeys() {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 501, 3, 2)
			f.register("live")
			f.register("gone")
			f.mustApply(&RevokeAgent{Name: "gone", Reason: "x"}, f.ops[0])
			routes := []struct {
				name    string
				p       Payload
				signers []PrivateKey
			}{
				{"register", &RegisterAgent{Name: "w", Key: wk, ExpiresAt: f.now.Add(time.Hour)}, f.ops[:1]},
				{"rotate", &RotateAgentKey{Name: "live", NewKey: wk}, f.ops[:1]},
				{"reinstate", &ReinstateAgent{Name: "gone", Key: wk, ExpiresAt: f.now.Add(time.Hour)}, f.ops[:2]},
				{"admit node", &AdmitNode{Node: NodeEntry{Name: "wn", Key: wk}}, f.ops[:1]},
				{"add operator", &AddOperator{Operator: OperatorEntry{Name: "wo", Key: wk}}, f.ops[:2]},
			}
			for _, r := range routes {
				before := f.reg.Hash()
				wantErr(t, f.apply(r.p, r.signers...), ErrInvalid)
				if f.reg.Hash() != before {
					t.Fatalf("%s: rejected command changed the state", r.name)
				}
			}
			// Genesis: as an operator and as a node.
			op := mustKey(t, f.rnd)
			for _, g := range []*Genesis{
				{ClusterID: f.cluster, TrustDomain: "x.org", Threshold: 1,
					Operators: []OperatorEntry{{"a", op.Public()}, {"b", wk}},
					Nodes:     []NodeEntry{{Name: "n", Key: mustKey(t, f.rnd).Public()}}},
				{ClusterID: f.cluster, TrustDomain: "x.org", Threshold: 1,
					Operators: []OperatorEntry{{"a", op.Public()}},
					Nodes:     []NodeEntry{{Name: "n", Key: wk}}},
			} {
				r := NewRegistry()
				c := f.cmd(g, op)
				v, err := c.Verify()
				if err != nil {
					t.Fatal(err)
				}
				wantErr(t, r.Apply(v, f.now), ErrInvalid)
				if r.Initialised() {
					t.Fatal("rejected genesis initialised the registry")
				}
			}
		})
	}
}

// TestReviewVerifiedPayloadImmutable: changing the payload returned by VerifiedCommand.Payload
// must not change what Apply applies (only the signed bytes count).
func TestReviewVerifiedPayloadImmutable(t *testing.T) {
	f := newFixture(t, 502, 2, 1)
	attacker := mustKey(t, f.rnd)
	honest := mustKey(t, f.rnd)
	v, err := f.cmd(&RegisterAgent{Name: "a1", Key: honest.Public(), ExpiresAt: f.now.Add(time.Hour)}, f.ops[0]).Verify()
	if err != nil {
		t.Fatal(err)
	}
	p := v.Payload().(*RegisterAgent)
	p.Key, p.Name = attacker.Public(), "root"
	if err := f.reg.Apply(v, f.now); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.reg.AgentByID(attacker.ID()); ok {
		t.Fatal("a mutated, unsigned payload was applied")
	}
	if a, ok := f.reg.Agent("a1"); !ok || a.Key != honest.Public() {
		t.Fatalf("signed registration not applied: %+v", a)
	}
}

// TestReviewVerifyRefusesUnencodableIssuedAt: a command whose in-memory IssuedAt does not survive
// the encoding (here it wraps to t0) signs one time and would be checked against another, so the
// leader (in-memory) and followers (decoded) would decide differently. Verify refuses it.
func TestReviewVerifyRefusesUnencodableIssuedAt(t *testing.T) {
	f := newFixture(t, 503, 1, 1)
	c := f.cmd(&SetPolicy{Version: 1, Document: []byte("response: {dry_run: true}\n")})
	c.IssuedAt = time.Unix(t0.Unix()+1<<55, 0).UTC() // UnixNano wraps to t0's
	if timeToWire(c.IssuedAt) != timeToWire(t0) {
		t.Fatal("premise: the wrapped time should encode as t0")
	}
	c.Sign(f.ops[0])
	_, err := c.Verify()
	wantErr(t, err, ErrMalformed)
	// The wire form is a different, valid command: applied as such.
	d, err := DecodeCommand(c.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.applyCmd(d); err != nil {
		t.Fatalf("decoded form: %v", err)
	}
}

// TestReviewLabelErrorDeterministic: the rejection text of a command must be the same on every
// replica (it was chosen by map iteration order when several labels were invalid).
func TestReviewLabelErrorDeterministic(t *testing.T) {
	f := newFixture(t, 504, 1, 1)
	labels := map[string]string{}
	for _, k := range []string{"Aa", "Bb", "Cc", "Dd", "Ee", "Ff", "Gg", "Hh"} {
		labels[k] = "v"
	}
	c := f.cmd(&RegisterAgent{Name: "a1", Key: mustKey(t, f.rnd).Public(), Labels: labels,
		ExpiresAt: f.now.Add(time.Hour)}, f.ops[0])
	first := ""
	for i := range 40 {
		err := f.applyCmd(c)
		wantErr(t, err, ErrInvalid)
		if i == 0 {
			first = err.Error()
		} else if err.Error() != first {
			t.Fatalf("rejection text varies: %q vs %q", first, err.Error())
		}
	}
}

// TestReviewPrincipalFarFuture: Principal must report expiry for any `now`, also one past the
// int64-nanosecond range (UnixNano wrapped, so an expired agent looked active).
func TestReviewPrincipalFarFuture(t *testing.T) {
	f := newFixture(t, 505, 1, 1)
	k := f.register("a1")
	for _, now := range []time.Time{f.now.Add(2 * time.Hour), time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if _, st, ok := f.reg.Principal(k.ID(), now); !ok || st != StatusExpired {
			t.Fatalf("at %s: status %s, want expired", now, st)
		}
		a, _ := f.reg.AgentByID(k.ID())
		if a.StatusAt(now) != StatusExpired {
			t.Fatalf("StatusAt(%s) = %s", now, a.StatusAt(now))
		}
	}
}

// TestReviewRejectionsChangeNothing: every rejection path returns its exact sentinel and leaves
// Hash() unchanged.
func TestReviewRejectionsChangeNothing(t *testing.T) {
	f := newFixture(t, 506, 3, 2)
	agentKey := f.register("live")
	oldKey := f.register("gone")
	f.mustApply(&RevokeAgent{Name: "gone", Reason: "x"}, f.ops[0])
	rotated := f.register("rot")
	f.mustApply(&RotateAgentKey{Name: "rot", NewKey: mustKey(t, f.rnd).Public()}, f.ops[0])
	node2 := mustKey(t, f.rnd)
	f.mustApply(&AdmitNode{Node: NodeEntry{Name: "node-2", Key: node2.Public()}}, f.ops[0])
	removedOp := mustKey(t, f.rnd)
	f.mustApply(&AddOperator{Operator: OperatorEntry{Name: "opx", Key: removedOp.Public()}}, f.ops[0], f.ops[1])
	f.mustApply(&RemoveOperator{Name: "opx"}, f.ops[0], f.ops[1])
	applied := f.cmd(&SetPolicy{Version: 1, Document: []byte("response: {dry_run: true}\n")}, f.ops[0])
	if err := f.applyCmd(applied); err != nil {
		t.Fatal(err)
	}
	fresh := func() PublicKey { return mustKey(t, f.rnd).Public() }
	exp := f.now.Add(time.Hour)
	other := f.cmd(&SetPolicy{Version: 2}, f.ops[0])
	other.ClusterID[0] ^= 1
	other.Signatures = nil
	other.Sign(f.ops[0])
	stale := f.cmd(&SetPolicy{Version: 2})
	stale.IssuedAt = f.now.Add(-11 * time.Minute)
	stale.Sign(f.ops[0])
	future := f.cmd(&SetPolicy{Version: 2})
	future.IssuedAt = f.now.Add(2 * time.Minute)
	future.Sign(f.ops[0])
	gen := f.cmd(&Genesis{ClusterID: f.cluster, TrustDomain: "example.org", Threshold: 1,
		Operators: []OperatorEntry{{"z", f.ops[0].Public()}}, Nodes: []NodeEntry{{Name: "n", Key: fresh()}}}, f.ops[0])

	cases := []struct {
		name string
		c    *Command
		want error
	}{
		{"replay same nonce", applied, ErrReplay},
		{"another cluster", other, ErrWrongCluster},
		{"old issued-at, new nonce", stale, ErrStale},
		{"issued-at in the future", future, ErrFromFuture},
		{"genesis into initialised registry", gen, ErrAlreadyInitialised},
		{"node key signs register", f.cmd(&RegisterAgent{Name: "n1", Key: fresh(), ExpiresAt: exp}, f.nodes[0]), ErrUnauthorized},
		{"agent key signs revoke", f.cmd(&RevokeAgent{Name: "live"}, agentKey), ErrUnauthorized},
		{"removed operator signs", f.cmd(&RevokeAgent{Name: "live"}, removedOp), ErrUnauthorized},
		{"operator plus removed operator for M-of-N", f.cmd(&SetThreshold{Threshold: 1}, f.ops[0], removedOp), ErrUnauthorized},
		{"operator plus node for M-of-N", f.cmd(&SetThreshold{Threshold: 1}, f.ops[0], f.nodes[0]), ErrUnauthorized},
		{"one operator adds operator", f.cmd(&AddOperator{Operator: OperatorEntry{"o9", fresh()}}, f.ops[0]), ErrInsufficientSignatures},
		{"one operator sets revoke quorum", f.cmd(&SetRevokeQuorum{Quorum: 1}, f.ops[0]), ErrInsufficientSignatures},
		{"one operator disables automated response", f.cmd(&SetAutomatedResponse{}, f.ops[0]), ErrInsufficientSignatures},
		{"threshold above operators", f.cmd(&SetThreshold{Threshold: 4}, f.ops[0], f.ops[1]), ErrInvalid},
		{"threshold zero", f.cmd(&SetThreshold{Threshold: 0}, f.ops[0], f.ops[1]), ErrInvalid},
		{"add operator with revoked key", f.cmd(&AddOperator{Operator: OperatorEntry{"o9", oldKey.Public()}}, f.ops[0], f.ops[1]), ErrRevokedKey},
		{"add operator with removed operator key", f.cmd(&AddOperator{Operator: OperatorEntry{"o9", removedOp.Public()}}, f.ops[0], f.ops[1]), ErrRevokedKey},
		{"add operator with a live agent key", f.cmd(&AddOperator{Operator: OperatorEntry{"o9", agentKey.Public()}}, f.ops[0], f.ops[1]), ErrExists},
		{"add operator under revoked name", f.cmd(&AddOperator{Operator: OperatorEntry{"gone", fresh()}}, f.ops[0], f.ops[1]), ErrRevokedName},
		{"admit node with agent key", f.cmd(&AdmitNode{Node: NodeEntry{Name: "n9", Key: agentKey.Public()}}, f.ops[0]), ErrExists},
		{"admit node with revoked agent key", f.cmd(&AdmitNode{Node: NodeEntry{Name: "n9", Key: oldKey.Public()}}, f.ops[0]), ErrRevokedKey},
		{"admit node under revoked name", f.cmd(&AdmitNode{Node: NodeEntry{Name: "gone", Key: fresh()}}, f.ops[0]), ErrRevokedName},
		{"register revoked name", f.cmd(&RegisterAgent{Name: "gone", Key: fresh(), ExpiresAt: exp}, f.ops[0]), ErrRevokedName},
		{"register rotated-out key", f.cmd(&RegisterAgent{Name: "n9", Key: rotated.Public(), ExpiresAt: exp}, f.ops[0]), ErrRevokedKey},
		{"register operator key", f.cmd(&RegisterAgent{Name: "n9", Key: f.ops[2].Public(), ExpiresAt: exp}, f.ops[0]), ErrExists},
		{"rotate to revoked key", f.cmd(&RotateAgentKey{Name: "live", NewKey: oldKey.Public()}, f.ops[0]), ErrRevokedKey},
		{"rotate revoked agent", f.cmd(&RotateAgentKey{Name: "gone", NewKey: fresh()}, f.ops[0]), ErrInvalid},
		{"renew revoked agent", f.cmd(&RenewAgent{Name: "gone", ExpiresAt: exp}, f.ops[0]), ErrInvalid},
		{"reinstate with old key", f.cmd(&ReinstateAgent{Name: "gone", Key: oldKey.Public(), ExpiresAt: exp}, f.ops[0], f.ops[1]), ErrRevokedKey},
		{"reinstate one operator", f.cmd(&ReinstateAgent{Name: "gone", Key: fresh(), ExpiresAt: exp}, f.ops[0]), ErrInsufficientSignatures},
		{"reinstate active agent", f.cmd(&ReinstateAgent{Name: "live", Key: fresh(), ExpiresAt: exp}, f.ops[0], f.ops[1]), ErrInvalid},
		{"auto-revoke while disabled", f.cmd(&AutoRevokeAgent{Name: "live"}, f.nodes[0], node2), ErrUnauthorized},
		{"auto-revoke signed by operator", f.cmd(&AutoRevokeAgent{Name: "live"}, f.ops[0]), ErrUnauthorized},
		{"policy version skip", f.cmd(&SetPolicy{Version: 3}, f.ops[0]), ErrVersionConflict},
		{"remove unknown node", f.cmd(&RemoveNode{Name: "nope"}, f.ops[0]), ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.reg.Hash()
			wantErr(t, f.applyCmd(tc.c), tc.want)
			if f.reg.Hash() != before {
				t.Fatal("rejected command changed the state")
			}
		})
	}

	// Automated response on: one node is below the quorum of two; an operator cannot sign.
	f.mustApply(&SetAutomatedResponse{Enabled: true}, f.ops[0])
	before := f.reg.Hash()
	wantErr(t, f.apply(&AutoRevokeAgent{Name: "live"}, f.nodes[0]), ErrInsufficientSignatures)
	wantErr(t, f.apply(&AutoRevokeAgent{Name: "live"}, f.nodes[0], agentKey), ErrUnauthorized)
	if f.reg.Hash() != before {
		t.Fatal("rejected auto-revoke changed the state")
	}
	// M-of-N: removing operators so that fewer than M remain.
	f.mustApply(&RemoveOperator{Name: "opc"}, f.ops[0], f.ops[1])
	wantErr(t, f.apply(&RemoveOperator{Name: "opb"}, f.ops[0], f.ops[1]), ErrInvalid)
	// A signer removed by an earlier command no longer counts.
	wantErr(t, f.apply(&SetThreshold{Threshold: 1}, f.ops[0], f.ops[2]), ErrUnauthorized)
}

// TestReviewDuplicateSigner: the same key twice is refused by Verify, whatever else is signed.
func TestReviewDuplicateSigner(t *testing.T) {
	f := newFixture(t, 507, 3, 2)
	c := f.cmd(&SetThreshold{Threshold: 1}, f.ops[0], f.ops[0])
	_, err := c.Verify()
	wantErr(t, err, ErrDuplicateSigner)
	c = f.cmd(&SetThreshold{Threshold: 1}, f.ops[0], f.ops[1], f.ops[0])
	_, err = c.Verify()
	wantErr(t, err, ErrDuplicateSigner)
}

// TestReviewNonceWindowBoundary: a command stays a replay until the instant it becomes stale, so
// pruning its nonce never lets it back in; `now` going backwards does not reopen the window.
func TestReviewNonceWindowBoundary(t *testing.T) {
	f := newFixture(t, 508, 1, 1)
	c := f.cmd(&SetPolicy{Version: 1}, f.ops[0])
	if err := f.applyCmd(c); err != nil {
		t.Fatal(err)
	}
	age := f.reg.Limits().MaxCommandAge
	filler := func(at time.Time) { // advance the registry's now (prunes nonces)
		f.now = at
		v, _ := f.reg.Policy()
		f.mustApply(&SetPolicy{Version: v + 1}, f.ops[0])
	}
	filler(t0.Add(age))
	wantErr(t, f.applyCmd(c), ErrReplay)
	filler(t0.Add(age + 1))
	wantErr(t, f.applyCmd(c), ErrStale)
	f.now = t0 // backwards: the effective now stays at t0+age+1
	wantErr(t, f.applyCmd(c), ErrStale)
	// And the same holds after a snapshot round trip.
	var buf bytes.Buffer
	if err := f.reg.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r2, err := ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := c.Verify()
	wantErr(t, r2.Apply(v, t0), ErrStale)
}

// TestReviewSnapshotRestoreApply: restore at every step of a history, then apply the rest on
// both: the hashes agree at the end (nonces, their expiry order and lastNow survive).
func TestReviewSnapshotRestoreApply(t *testing.T) {
	f := newFixture(t, 509, 2, 1)
	var cmds []*Command
	var nows []time.Time
	now, version := t0, uint64(0)
	for i := range 24 {
		now = now.Add(time.Duration(i%5) * 3 * time.Minute) // several nonces expire on the way
		if i%7 == 3 {
			now = now.Add(-5 * time.Minute) // now goes backwards sometimes
		}
		f.now = now
		var p Payload
		if i%3 == 0 {
			p = &RegisterAgent{Name: "a" + string(rune('a'+i)), Key: mustKey(t, f.rnd).Public(), ExpiresAt: now.Add(48 * time.Hour)}
		} else {
			version++
			p = &SetPolicy{Version: version, Document: fmt.Appendf(nil, "response:\n  escalate_after: %d\n", i+1)}
		}
		cmds, nows = append(cmds, f.cmd(p, f.ops[i%2])), append(nows, now)
	}
	base := f.reg
	applyAll := func(r *Registry, from int) {
		for i := from; i < len(cmds); i++ {
			v, err := cmds[i].Verify()
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Apply(v, nows[i]); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
	}
	var snap bytes.Buffer
	if err := base.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	ref, err := ReadSnapshot(bytes.NewReader(snap.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	applyAll(ref, 0)
	want := ref.Hash()
	// Restore at every cut point.
	for cut := 0; cut <= len(cmds); cut++ {
		r, _ := ReadSnapshot(bytes.NewReader(snap.Bytes()))
		for i := 0; i < cut; i++ {
			v, _ := cmds[i].Verify()
			if err := r.Apply(v, nows[i]); err != nil {
				t.Fatal(err)
			}
		}
		var mid bytes.Buffer
		if err := r.WriteSnapshot(&mid); err != nil {
			t.Fatal(err)
		}
		r2, err := ReadSnapshot(&mid)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if r2.Hash() != r.Hash() {
			t.Fatalf("cut %d: restored hash differs", cut)
		}
		applyAll(r2, cut)
		if r2.Hash() != want {
			t.Fatalf("cut %d: snapshot → restore → apply differs from apply", cut)
		}
	}
}

var (
	edP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	// edD = -121665/121666 mod p.
	edD = func() *big.Int {
		inv := new(big.Int).ModInverse(big.NewInt(121666), edP)
		d := new(big.Int).Mul(big.NewInt(-121665), inv)
		return d.Mod(d, edP)
	}()
)

// refStrongKey is the reference for strongKey: canonical, on the curve, and [8]P ≠ identity.
func refStrongKey(k PublicKey) bool {
	var be [32]byte
	for i := range be {
		be[i] = k.b[31-i]
	}
	sign := be[0] >> 7
	be[0] &= 0x7f
	y := new(big.Int).SetBytes(be[:])
	if y.Cmp(edP) >= 0 { // non-canonical y
		return false
	}
	// x² = (y² − 1) / (d·y² + 1)
	y2 := new(big.Int).Mul(y, y)
	y2.Mod(y2, edP)
	u := new(big.Int).Sub(y2, big.NewInt(1))
	u.Mod(u, edP)
	v := new(big.Int).Mul(edD, y2)
	v.Add(v, big.NewInt(1))
	v.Mod(v, edP)
	x2 := new(big.Int).ModInverse(v, edP)
	if x2 == nil {
		return false
	}
	x2.Mul(x2, u).Mod(x2, edP)
	x := new(big.Int).ModSqrt(x2, edP)
	if x == nil { // not on the curve
		return false
	}
	if x.Sign() == 0 && sign == 1 { // non-canonical encoding of x = 0
		return false
	}
	// Small order iff [8]P = (0, 1); the sign of x does not change the order.
	for range 3 {
		x, y = edAdd(x, y, x, y)
	}
	return !(x.Sign() == 0 && y.Cmp(big.NewInt(1)) == 0)
}

// edAdd adds two affine points of −x² + y² = 1 + d·x²·y² (complete formulas: d is a non-square).
func edAdd(x1, y1, x2, y2 *big.Int) (*big.Int, *big.Int) {
	x1x2 := new(big.Int).Mul(x1, x2)
	y1y2 := new(big.Int).Mul(y1, y2)
	t := new(big.Int).Mul(x1x2, y1y2)
	t.Mul(t, edD).Mod(t, edP)
	nx := new(big.Int).Add(new(big.Int).Mul(x1, y2), new(big.Int).Mul(y1, x2))
	dx := new(big.Int).Add(big.NewInt(1), t)
	ny := new(big.Int).Add(y1y2, x1x2)
	dy := new(big.Int).Sub(big.NewInt(1), t)
	dx.Mod(dx, edP).ModInverse(dx, edP)
	dy.Mod(dy, edP).ModInverse(dy, edP)
	nx.Mul(nx, dx).Mod(nx, edP)
	ny.Mul(ny, dy).Mod(ny, edP)
	return nx, ny
}
