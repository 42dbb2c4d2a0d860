package identity

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func (f *fixture) keyringOp(op KeyringOpKind, arg []byte, signer PrivateKey) *KeyringOp {
	f.t.Helper()
	o, err := NewKeyringOp(f.cluster, op, arg, f.now, f.rnd)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := o.Sign(signer); err != nil {
		f.t.Fatal(err)
	}
	return o
}

// TestKeyringOp: a signed op round-trips, verifies and passes the registry check; every way of
// getting it wrong is refused with its own sentinel.
func TestKeyringOp(t *testing.T) {
	f := newFixture(t, 31, 2, 1)
	key := bytes.Repeat([]byte{7}, 32)
	o := f.keyringOp(KeyringInstall, key, f.ops[0])
	got, err := DecodeKeyringOp(o.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(); err != nil {
		t.Fatal(err)
	}
	if err := f.reg.CheckKeyringOp(got, f.now); err != nil {
		t.Fatal(err)
	}
	if got.Op != KeyringInstall || !bytes.Equal(got.Arg, key) || !got.Signer.Equal(f.ops[0].Public()) || got.Nonce != o.Nonce {
		t.Fatalf("round trip: %+v", got)
	}

	tamper := func(fn func(o *KeyringOp)) *KeyringOp {
		c := *f.keyringOp(KeyringUse, []byte("0123456789abcdef"), f.ops[1])
		fn(&c)
		return &c
	}
	otherCluster, _ := NewClusterID(f.rnd)
	for _, tc := range []struct {
		name   string
		op     *KeyringOp
		verify error // from Verify
		check  error // from CheckKeyringOp, when Verify passes
	}{
		{"unsigned", tamper(func(o *KeyringOp) { o.Signature = nil }), ErrUnsigned, nil},
		{"changed fingerprint", tamper(func(o *KeyringOp) { o.Arg = []byte("fedcba9876543210") }), ErrBadSignature, nil},
		{"changed op", tamper(func(o *KeyringOp) { o.Op = KeyringRemove }), ErrBadSignature, nil},
		{"changed signer", tamper(func(o *KeyringOp) { o.Signer = f.ops[0].Public() }), ErrBadSignature, nil},
		{"short signature", tamper(func(o *KeyringOp) { o.Signature = o.Signature[:10] }), ErrBadSignature, nil},
		{"signed by a node", f.keyringOp(KeyringUse, []byte("0123456789abcdef"), f.nodes[0]), nil, ErrUnauthorized},
		{"signed by an agent", f.keyringOp(KeyringUse, []byte("0123456789abcdef"), f.register("worker")), nil, ErrUnauthorized},
		{"other cluster", func() *KeyringOp {
			o, _ := NewKeyringOp(otherCluster, KeyringUse, []byte("0123456789abcdef"), f.now, f.rnd)
			_ = o.Sign(f.ops[0])
			return o
		}(), nil, ErrWrongCluster},
		{"stale", func() *KeyringOp {
			o, _ := NewKeyringOp(f.cluster, KeyringUse, []byte("0123456789abcdef"), f.now.Add(-11*time.Minute), f.rnd)
			_ = o.Sign(f.ops[0])
			return o
		}(), nil, ErrStale},
		{"from the future", func() *KeyringOp {
			o, _ := NewKeyringOp(f.cluster, KeyringUse, []byte("0123456789abcdef"), f.now.Add(2*time.Minute), f.rnd)
			_ = o.Sign(f.ops[0])
			return o
		}(), nil, ErrFromFuture},
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
			wantErr(t, f.reg.CheckKeyringOp(tc.op, f.now), tc.check)
		})
	}
	// A removed operator's signature no longer counts.
	f.mustApply(&RemoveOperator{Name: "opb"}, f.ops[0])
	wantErr(t, f.reg.CheckKeyringOp(f.keyringOp(KeyringUse, []byte("0123456789abcdef"), f.ops[1]), f.now), ErrUnauthorized)
}

// TestKeyringOpFields: bad arguments are refused when the op is built, naming the field.
func TestKeyringOpFields(t *testing.T) {
	f := newFixture(t, 32, 1, 1)
	for _, tc := range []struct {
		op    KeyringOpKind
		arg   []byte
		field string
	}{
		{KeyringInstall, make([]byte, 20), "keyring_op.key"},
		{KeyringInstall, nil, "keyring_op.key"},
		{KeyringUse, []byte("0123456789ABCDEF"), "keyring_op.fingerprint"},
		{KeyringRemove, []byte("0123"), "keyring_op.fingerprint"},
		{9, nil, "keyring_op.op"},
	} {
		_, err := NewKeyringOp(f.cluster, tc.op, tc.arg, f.now, f.rnd)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s %q: got %v, want an error naming %s", tc.op, tc.arg, err, tc.field)
		}
	}
	if _, err := ParseKeyringOpKind("rotate"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseKeyringOpKind(rotate): %v", err)
	}
}

// TestKeyringOpNotACommand: an operator's signature over a keyring op is worthless as a
// registry command (separate signing domain), whatever the bytes decode to.
func TestKeyringOpNotACommand(t *testing.T) {
	f := newFixture(t, 33, 1, 1)
	o := f.keyringOp(KeyringRemove, []byte("0123456789abcdef"), f.ops[0])
	if c, err := DecodeCommand(o.Encode()); err == nil {
		if _, err := c.Verify(); err == nil {
			t.Fatal("a keyring op verified as a registry command")
		}
	}
	c := f.cmd(&SetThreshold{Threshold: 1}, f.ops[0])
	if _, err := DecodeKeyringOp(c.Encode()); err == nil {
		t.Fatal("a registry command decoded as a keyring op")
	}
}

// TestDecodeKeyringOpStrict: truncated, oversized, trailing or unknown-version bytes are
// refused as malformed.
func TestDecodeKeyringOpStrict(t *testing.T) {
	f := newFixture(t, 34, 1, 1)
	enc := f.keyringOp(KeyringInstall, bytes.Repeat([]byte{1}, 32), f.ops[0]).Encode()
	if len(enc) != MaxKeyringOpSize {
		t.Fatalf("a 32-byte install encodes to %d bytes, cap %d", len(enc), MaxKeyringOpSize)
	}
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": enc[:len(enc)-1],
		"trailing":  append(bytes.Clone(enc), 0),
		"version":   append([]byte{2}, enc[1:]...),
		"long arg":  append(append(bytes.Clone(enc[:18]), 33), make([]byte, 33+8+16+32+64)...),
	} {
		if _, err := DecodeKeyringOp(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodeKeyringOp(f *testing.F) {
	fx := newFixture(f, 35, 1, 1)
	f.Add(fx.keyringOp(KeyringInstall, bytes.Repeat([]byte{3}, 16), fx.ops[0]).Encode())
	f.Add(fx.keyringOp(KeyringUse, []byte("0123456789abcdef"), fx.ops[0]).Encode())
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := DecodeKeyringOp(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode error without ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(o.Encode(), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
		_ = o.Verify()
	})
}
