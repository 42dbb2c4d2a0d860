package identity

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func (f *fixture) liftOp(agent, reason string, at time.Time, signer PrivateKey) *LiftOp {
	f.t.Helper()
	o, err := NewLiftOp(f.cluster, agent, reason, at, f.rnd)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := o.Sign(signer); err != nil {
		f.t.Fatal(err)
	}
	return o
}

// TestLiftOp: a signed lift round-trips, verifies and passes the registry check, which names the
// operator; every way of getting it wrong is refused with its own sentinel.
func TestLiftOp(t *testing.T) {
	f := newFixture(t, 41, 2, 1)
	o := f.liftOp("worker", "load test, not an attack", f.now, f.ops[0])
	got, err := DecodeLiftOp(o.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(); err != nil {
		t.Fatal(err)
	}
	name, err := f.reg.CheckLiftOp(got, f.now)
	if err != nil {
		t.Fatal(err)
	}
	wantName := ""
	for _, op := range f.reg.Operators() {
		if op.Key.Equal(f.ops[0].Public()) {
			wantName = op.Name
		}
	}
	if name == "" || name != wantName {
		t.Fatalf("CheckLiftOp names %q, want %q", name, wantName)
	}
	if got.Agent != "worker" || got.Reason != o.Reason || !got.Signer.Equal(f.ops[0].Public()) || got.Nonce != o.Nonce || !got.IssuedAt.Equal(o.IssuedAt) {
		t.Fatalf("round trip: %+v", got)
	}

	tamper := func(fn func(o *LiftOp)) *LiftOp {
		c := *f.liftOp("worker", "checked", f.now, f.ops[1])
		fn(&c)
		return &c
	}
	otherCluster, _ := NewClusterID(f.rnd)
	for _, tc := range []struct {
		name   string
		op     *LiftOp
		verify error // from Verify
		check  error // from CheckLiftOp, when Verify passes
	}{
		{"unsigned", tamper(func(o *LiftOp) { o.Signature = nil }), ErrUnsigned, nil},
		{"changed agent", tamper(func(o *LiftOp) { o.Agent = "other" }), ErrBadSignature, nil},
		{"changed reason", tamper(func(o *LiftOp) { o.Reason = "something else" }), ErrBadSignature, nil},
		{"changed nonce", tamper(func(o *LiftOp) { o.Nonce[0] ^= 1 }), ErrBadSignature, nil},
		{"changed signer", tamper(func(o *LiftOp) { o.Signer = f.ops[0].Public() }), ErrBadSignature, nil},
		{"short signature", tamper(func(o *LiftOp) { o.Signature = o.Signature[:10] }), ErrBadSignature, nil},
		{"signed by a node", f.liftOp("worker", "x", f.now, f.nodes[0]), nil, ErrUnauthorized},
		{"signed by an agent", f.liftOp("worker", "x", f.now, f.register("worker")), nil, ErrUnauthorized},
		{"other cluster", func() *LiftOp {
			o, _ := NewLiftOp(otherCluster, "worker", "x", f.now, f.rnd)
			_ = o.Sign(f.ops[0])
			return o
		}(), nil, ErrWrongCluster},
		{"stale", f.liftOp("worker", "x", f.now.Add(-11*time.Minute), f.ops[0]), nil, ErrStale},
		{"from the future", f.liftOp("worker", "x", f.now.Add(2*time.Minute), f.ops[0]), nil, ErrFromFuture},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op.Verify()
			if tc.verify != nil {
				wantErr(t, err, tc.verify)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.reg.CheckLiftOp(tc.op, f.now)
			wantErr(t, err, tc.check)
		})
	}
	// A removed operator's signature no longer counts.
	f.mustApply(&RemoveOperator{Name: "opb"}, f.ops[0])
	_, err = f.reg.CheckLiftOp(f.liftOp("worker", "x", f.now, f.ops[1]), f.now)
	wantErr(t, err, ErrUnauthorized)
}

// TestLiftOpFields: bad fields are refused when the op is built, naming the field.
func TestLiftOpFields(t *testing.T) {
	f := newFixture(t, 42, 1, 1)
	for _, tc := range []struct {
		name, agent, reason, field string
	}{
		{"no agent", "", "x", "lift_op.agent"},
		{"bad agent", "Not A Name", "x", "lift_op.agent"},
		{"no reason", "worker", "", "lift_op.reason"},
		{"long reason", "worker", strings.Repeat("x", MaxReasonLen+1), "lift_op.reason"},
		{"control in reason", "worker", "ok\nforged log line", "lift_op.reason"},
	} {
		_, err := NewLiftOp(f.cluster, tc.agent, tc.reason, f.now, f.rnd)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: got %v, want an error naming %s", tc.name, err, tc.field)
		}
	}
	if _, err := NewLiftOp(ClusterID{}, "worker", "x", f.now, f.rnd); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero cluster: %v", err)
	}
}

// TestLiftOpDomain: an operator's signature over a lift is worthless as a keyring op or a
// registry command, and theirs as a lift.
func TestLiftOpDomain(t *testing.T) {
	f := newFixture(t, 43, 1, 1)
	o := f.liftOp("worker", "x", f.now, f.ops[0])
	if k, err := DecodeKeyringOp(o.Encode()); err == nil && k.Verify() == nil {
		t.Fatal("a lift op verified as a keyring op")
	}
	if c, err := DecodeCommand(o.Encode()); err == nil {
		if _, err := c.Verify(); err == nil {
			t.Fatal("a lift op verified as a registry command")
		}
	}
	k := f.keyringOp(KeyringUse, []byte("0123456789abcdef"), f.ops[0])
	if l, err := DecodeLiftOp(k.Encode()); err == nil && l.Verify() == nil {
		t.Fatal("a keyring op verified as a lift op")
	}
	// Same body bytes under the other domain: the signature does not carry over.
	forged := *o
	forged.Signature = f.ops[0].Sign(append([]byte("vigil/keyring-op/v1\x00"), o.SigningBytes()[len(liftOpDomain):]...))
	wantErr(t, forged.Verify(), ErrBadSignature)
}

// TestDecodeLiftOpStrict: truncated, oversized, trailing, unknown-version, over-long or
// invalid UTF-8 fields are refused as malformed; the cap fits the largest valid lift.
func TestDecodeLiftOpStrict(t *testing.T) {
	f := newFixture(t, 44, 1, 1)
	name := strings.Repeat("a", MaxNameLen)
	f.register(name)
	enc := f.liftOp(name, strings.Repeat("r", MaxReasonLen), f.now, f.ops[0]).Encode()
	if len(enc) != MaxLiftOpSize {
		t.Fatalf("the largest lift encodes to %d bytes, cap %d", len(enc), MaxLiftOpSize)
	}
	small := f.liftOp("worker", "ok", f.now, f.ops[0]).Encode()
	badUTF8 := bytes.Clone(small)
	badUTF8[1+16+1+len("worker")+1] = 0xff // first byte of the reason
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": enc[:len(enc)-1],
		"trailing":  append(bytes.Clone(small), 0),
		"oversized": append(bytes.Clone(enc), 0),
		"version":   append([]byte{2}, small[1:]...),
		"long name": append(append(bytes.Clone(small[:17]), MaxNameLen+1), make([]byte, 200)...),
		"bad utf-8": badUTF8,
	} {
		if _, err := DecodeLiftOp(b); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodeLiftOp(f *testing.F) {
	fx := newFixture(f, 45, 1, 1)
	f.Add(fx.liftOp("worker", "load test, not an attack", fx.now, fx.ops[0]).Encode())
	f.Add(fx.liftOp("a", "é", fx.now, fx.ops[0]).Encode())
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := DecodeLiftOp(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("decode error without ErrMalformed or ErrTooLarge: %v", err)
			}
			return
		}
		if !bytes.Equal(o.Encode(), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
		_ = o.Verify()
	})
}
