package identity

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// samplePayloads returns one payload of every kind.
func samplePayloads(t testing.TB) []Payload {
	rnd := seeded(42)
	k1, k2 := mustKey(t, rnd).Public(), mustKey(t, rnd).Public()
	cl, _ := NewClusterID(rnd)
	exp := t0.Add(time.Hour)
	node := NodeEntry{Name: "n1", Key: k2, Site: "s1", Voter: true, Addrs: []string{"/ip4/10.0.0.1/tcp/7400", "/ip4/10.0.0.1/udp/7400/quic-v1"}}
	return []Payload{
		&Genesis{ClusterID: cl, TrustDomain: "td.example", Operators: []OperatorEntry{{"alice", k1}}, Threshold: 1, Nodes: []NodeEntry{node}},
		&RegisterAgent{Name: "a1", Key: k1, Labels: map[string]string{"role": "x", "site": "y"}, Capabilities: []string{"call:a", "send:b"}, ExpiresAt: exp},
		&RevokeAgent{Name: "a1", Reason: "compromised"},
		&QuarantineAgent{Name: "a1", Reason: "anomaly"},
		&ReleaseAgent{Name: "a1"},
		&RenewAgent{Name: "a1", ExpiresAt: exp},
		&RotateAgentKey{Name: "a1", NewKey: k2},
		&ReinstateAgent{Name: "a1", Key: k2, ExpiresAt: exp},
		&AddOperator{Operator: OperatorEntry{"bob", k2}},
		&RemoveOperator{Name: "bob"},
		&SetThreshold{Threshold: 2},
		&AdmitNode{Node: node},
		&RemoveNode{Name: "n1"},
		&SetPolicy{Version: 3, Document: []byte("monitoring:\n  enabled: true\n")},
		&SetAutomatedResponse{Enabled: true},
		&AutoRevokeAgent{Name: "a1", Reason: "anomaly", Signals: []Signal{sampleSignal(t, rnd, cl, "a1", k1)}},
		&SetRevokeQuorum{Quorum: 3},
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	ps := samplePayloads(t)
	if len(ps) != int(kindEnd-1) {
		t.Fatalf("%d sample payloads, want one per kind", len(ps))
	}
	for _, p := range ps {
		t.Run(p.Kind().String(), func(t *testing.T) {
			b := EncodePayload(p)
			got, err := DecodePayload(p.Kind(), b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, p) {
				t.Fatalf("decode(encode(x)) != x:\n%#v\n%#v", got, p)
			}
			if !bytes.Equal(EncodePayload(got), b) {
				t.Fatal("encode(decode(b)) != b")
			}
			if _, err := DecodePayload(p.Kind(), append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("trailing byte: %v", err)
			}
			for i := 0; i < len(b); i++ {
				if _, err := DecodePayload(p.Kind(), b[:i]); err == nil && p.Kind() != KindSetAutomatedResponse {
					t.Fatalf("truncated at %d decoded", i)
				}
			}
		})
	}
}

func TestCapabilitiesAreASet(t *testing.T) {
	p := &RegisterAgent{Name: "a", Capabilities: []string{"z", "a", "z"}, ExpiresAt: t0}
	got, err := DecodePayload(KindRegisterAgent, EncodePayload(p))
	if err != nil {
		t.Fatal(err)
	}
	if c := got.(*RegisterAgent).Capabilities; !reflect.DeepEqual(c, []string{"a", "z"}) {
		t.Fatalf("got %v", c)
	}
}

func TestCommandRoundTrip(t *testing.T) {
	rnd := seeded(9)
	k1, k2 := mustKey(t, rnd), mustKey(t, rnd)
	cl, _ := NewClusterID(rnd)
	for _, p := range samplePayloads(t) {
		c, err := NewCommand(cl, p, t0, rnd)
		if err != nil {
			t.Fatal(err)
		}
		c.Sign(k1)
		c.Sign(k2)
		b := c.Encode()
		d, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", p.Kind(), err)
		}
		if !reflect.DeepEqual(d, c) {
			t.Fatalf("%s: decode(encode(c)) != c", p.Kind())
		}
		if !bytes.Equal(d.Encode(), b) {
			t.Fatal("encode(decode(b)) != b")
		}
		if !bytes.HasPrefix(c.SigningBytes(), []byte("vigil/command/v1\x00")) ||
			!bytes.HasPrefix(b, c.SigningBytes()[len(signingDomain):]) {
			t.Fatal("SigningBytes is not domain || encoding without signatures")
		}
		v, err := d.Verify()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(v.Payload(), p) || len(v.Signers()) != 2 || v.Signers()[1] != k2.ID() {
			t.Fatal("verified payload/signers mismatch")
		}
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	rnd := seeded(10)
	k := mustKey(t, rnd)
	cl, _ := NewClusterID(rnd)
	c, _ := NewCommand(cl, &ReleaseAgent{Name: "a"}, t0, rnd)
	c.Sign(k)
	good := c.Encode()
	// offsets: version 0, cluster 1..16, kind 17, payload len 18, payload 19..20, issued 21..28,
	// nonce 29..44, nsig 45, signer 46..77, siglen 78.
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	many := &Command{ClusterID: cl, Kind: KindReleaseAgent, Payload: c.Payload, IssuedAt: t0}
	for range MaxSignatures + 1 {
		many.Sign(mustKey(t, rnd))
	}
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"trailing byte", append(bytes.Clone(good), 0), ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"bad version", mut(func(b []byte) []byte { b[0] = 2; return b }), ErrMalformed},
		{"unknown kind", mut(func(b []byte) []byte { b[17] = 99; return b }), ErrMalformed},
		{"kind zero", mut(func(b []byte) []byte { b[17] = 0; return b }), ErrMalformed},
		{"overlong uvarint", mut(func(b []byte) []byte {
			return append(append(b[:18:18], 0x82, 0x00), good[19:]...)
		}), ErrMalformed},
		{"short signature", mut(func(b []byte) []byte {
			b[78] = 63
			return b[:len(b)-1]
		}), ErrMalformed},
		{"too many signatures", many.Encode(), ErrTooLarge},
		{"oversize", make([]byte, MaxCommandSize+1), ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeCommand(tc.b)
			wantErr(t, err, tc.want)
		})
	}
}

func TestDecodePayloadRejects(t *testing.T) {
	cases := []struct {
		name string
		kind Kind
		b    []byte
		want error
	}{
		{"bool 2", KindSetAutomatedResponse, []byte{2}, ErrMalformed},
		{"unknown kind", Kind(0), nil, ErrMalformed},
		{"invalid utf8", KindReleaseAgent, []byte{2, 0xff, 0xfe}, ErrMalformed},
		{"name too long", KindReleaseAgent, append([]byte{64}, bytes.Repeat([]byte("a"), 64)...), ErrTooLarge},
		{"labels unsorted", KindRegisterAgent, func() []byte {
			var e encoder
			e.str("a")
			e.raw(make([]byte, 32))
			e.uvarint(2)
			e.str("z")
			e.str("1")
			e.str("b")
			e.str("2")
			e.uvarint(0)
			e.i64(1)
			return e.b
		}(), ErrMalformed},
		{"capabilities duplicate", KindRegisterAgent, func() []byte {
			var e encoder
			e.str("a")
			e.raw(make([]byte, 32))
			e.uvarint(0)
			e.uvarint(2)
			e.str("x")
			e.str("x")
			e.i64(1)
			return e.b
		}(), ErrMalformed},
		{"too many labels", KindRegisterAgent, func() []byte {
			var e encoder
			e.str("a")
			e.raw(make([]byte, 32))
			e.uvarint(MaxLabels + 1)
			return e.b
		}(), ErrTooLarge},
		{"policy too large", KindSetPolicy, func() []byte {
			var e encoder
			e.uvarint(1)
			e.bytes(make([]byte, MaxPolicySize+1))
			return e.b
		}(), ErrTooLarge},
		{"huge count", KindGenesis, func() []byte {
			var e encoder
			e.raw(make([]byte, 16))
			e.str("td")
			e.uvarint(1 << 62)
			return e.b
		}(), ErrTooLarge},
		{"too many addrs", KindAdmitNode, func() []byte {
			var e encoder
			e.str("n")
			e.raw(make([]byte, 32))
			e.str("")
			e.boolean(false)
			e.uvarint(MaxAddrs + 1)
			return e.b
		}(), ErrTooLarge},
		{"uvarint overflow", KindSetPolicy, bytes.Repeat([]byte{0xff}, 11), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodePayload(tc.kind, tc.b)
			wantErr(t, err, tc.want)
		})
	}
}

func TestNewCommandRefusesUnencodable(t *testing.T) {
	rnd := seeded(11)
	cl, _ := NewClusterID(rnd)
	cases := []struct {
		name string
		p    Payload
		at   time.Time
		want error
	}{
		{"invalid utf8", &RevokeAgent{Name: "a", Reason: "\xff"}, t0, ErrMalformed},
		{"name too long", &ReleaseAgent{Name: strings.Repeat("a", 64)}, t0, ErrTooLarge},
		{"year 3000", &RenewAgent{Name: "a", ExpiresAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}, t0, ErrInvalid},
		{"zero issued at", &ReleaseAgent{Name: "a"}, time.Time{}, ErrInvalid},
		{"negative threshold", &SetThreshold{Threshold: -1}, t0, ErrInvalid},
		{"policy too big", &SetPolicy{Version: 1, Document: make([]byte, MaxPolicySize+1)}, t0, ErrTooLarge},
		{"nil", nil, t0, ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewCommand(cl, tc.p, tc.at, rnd)
			wantErr(t, err, tc.want)
		})
	}
}

func TestVerify(t *testing.T) {
	rnd := seeded(12)
	k1, k2 := mustKey(t, rnd), mustKey(t, rnd)
	cl, _ := NewClusterID(rnd)
	base := func() *Command {
		c, _ := NewCommand(cl, &ReleaseAgent{Name: "a"}, t0, rnd)
		return c
	}
	cases := []struct {
		name string
		mk   func() *Command
		want error
	}{
		{"unsigned", base, ErrUnsigned},
		{"forged", func() *Command {
			c := base()
			c.Sign(k1)
			c.Signatures[0].Sig[0] ^= 1
			return c
		}, ErrBadSignature},
		{"wrong signer", func() *Command {
			c := base()
			c.Sign(k1)
			c.Signatures[0].Signer = k2.Public()
			return c
		}, ErrBadSignature},
		{"tampered payload", func() *Command {
			c := base()
			c.Sign(k1)
			c.Payload = EncodePayload(&ReleaseAgent{Name: "b"})
			return c
		}, ErrBadSignature},
		{"tampered kind", func() *Command {
			c := base()
			c.Sign(k1)
			c.Kind = KindRemoveNode
			return c
		}, ErrBadSignature},
		{"tampered nonce", func() *Command {
			c := base()
			c.Sign(k1)
			c.Nonce[0] ^= 1
			return c
		}, ErrBadSignature},
		{"duplicate signer", func() *Command {
			c := base()
			c.Sign(k1)
			c.Sign(k1)
			return c
		}, ErrDuplicateSigner},
		{"second bad", func() *Command {
			c := base()
			c.Sign(k1)
			c.Signatures = append(c.Signatures, Signature{Signer: k2.Public(), Sig: make([]byte, 64)})
			return c
		}, ErrBadSignature},
		{"short sig", func() *Command {
			c := base()
			c.Signatures = []Signature{{Signer: k1.Public(), Sig: []byte{1}}}
			return c
		}, ErrBadSignature},
		{"bad payload", func() *Command {
			c := base()
			c.Payload = []byte{0xff}
			c.Sign(k1)
			return c
		}, ErrMalformed},
		{"unknown kind", func() *Command {
			c := base()
			c.Kind = 77
			c.Sign(k1)
			return c
		}, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.mk().Verify()
			wantErr(t, err, tc.want)
		})
	}
	// A verified command is isolated from later changes to the original.
	c := base()
	c.Sign(k1)
	v, err := c.Verify()
	if err != nil {
		t.Fatal(err)
	}
	c.Payload[1] = 'z'
	if v.Payload().(*ReleaseAgent).Name != "a" || v.Command().Payload[1] != 'a' {
		t.Fatal("verified command shares memory with the original")
	}
}

func TestTimeWire(t *testing.T) {
	for _, tm := range []time.Time{{}, t0, time.Unix(0, 0), time.Unix(0, -5), time.Unix(0, 1<<62)} {
		var e encoder
		e.time(tm)
		d := decoder{b: e.b}
		if got := d.time(); !got.Equal(tm) || got.IsZero() != tm.IsZero() {
			t.Fatalf("%v → %v", tm, got)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	rnd := seeded(13)
	k := mustKey(f, rnd)
	cl, _ := NewClusterID(rnd)
	for _, p := range samplePayloads(f) {
		c, _ := NewCommand(cl, p, t0, rnd)
		c.Sign(k)
		f.Add(c.Encode())
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode error without ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(c.Encode(), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
		_, _ = c.Verify()
	})
}

func FuzzDecodePayload(f *testing.F) {
	for _, p := range samplePayloads(f) {
		f.Add(uint8(p.Kind()), EncodePayload(p))
	}
	f.Add(uint8(0), []byte{})
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		p, err := DecodePayload(Kind(kind), b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode error without ErrMalformed: %v", err)
			}
			return
		}
		if p.Kind() != Kind(kind) || !bytes.Equal(EncodePayload(p), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
	})
}
