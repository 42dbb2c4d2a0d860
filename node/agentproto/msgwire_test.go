package agentproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

func sampleMsgMessages(tb testing.TB) []Message {
	tb.Helper()
	a, b := mustKey(tb).ID().Peer(), mustKey(tb).ID().Peer()
	at := time.Unix(0, 1_700_000_000_123_456_789).UTC()
	return []Message{
		&Send{To: "worker", Capability: "ask", Body: []byte("hello")},
		&Send{To: "w", Capability: "c"},
		&Receipt{ID: "abc-1"},
		&MsgRefusal{Code: CodeNoCapability, Rule: "capability ask:b not held by a", Hop: HopSenderNode, Reason: "r"},
		&Deliver{ID: "x", From: "a", FromID: a, To: "b", Capability: "ask", SentAt: at, Body: []byte{0, 1}},
		&Ack{},
		&Relay{ID: "x", From: a, To: b, Capability: "ask", SentAt: at, Body: bytes.Repeat([]byte{7}, MaxBodySize)},
		&Report{Events: []Event{{Kind: "metric", Name: "cpu_usage", Value: 0.5, At: at, Attrs: map[string]string{"a": "1", "b": "2"}},
			{Kind: "tool_call", Name: "search", Value: math.Inf(1), At: at}}},
		&Locate{Agent: a},
		&Located{Attached: true, Proof: samplePresence(at)},
		&Located{Attached: true}, // the format before proofs
		&Located{},
		&Notice{Code: "revoked", Reason: "stolen key"},
	}
}

func samplePresence(at time.Time) *Presence {
	pr := &Presence{Timestamp: at}
	for i := range pr.Nonce {
		pr.Nonce[i] = byte(i)
	}
	for i := range pr.Signature {
		pr.Signature[i] = byte(255 - i)
	}
	return pr
}

// TestLocatedWire: a Located has exactly three encodings: not attached, attached with its
// proof, and the format before proofs (attached, no proof), which decodes as such so that the
// router can tell it proves nothing. A proof is never encoded without Attached.
func TestLocatedWire(t *testing.T) {
	at := time.Unix(0, 1_700_000_000_123_456_789).UTC()
	pr := samplePresence(at)
	proved := append([]byte{byte(typeLocated), 2}, pr.Nonce[:]...)
	proved = binary.BigEndian.AppendUint64(proved, uint64(at.UnixNano()))
	proved = append(proved, pr.Signature[:]...)
	for _, tc := range []struct {
		name string
		m    *Located
		want []byte
	}{
		{"not attached", &Located{}, []byte{byte(typeLocated), 0}},
		{"a proof without attached is not sent", &Located{Proof: pr}, []byte{byte(typeLocated), 0}},
		{"old format", &Located{Attached: true}, []byte{byte(typeLocated), 1}},
		{"proved", &Located{Attached: true, Proof: pr}, proved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := EncodeEnvelope(tc.m)
			if !bytes.Equal(b, tc.want) {
				t.Fatalf("encoding %x, want %x", b, tc.want)
			}
			m, err := DecodeEnvelope(b)
			if err != nil {
				t.Fatal(err)
			}
			got := m.(*Located)
			if got.Attached != tc.m.Attached || (got.Proof != nil) != (tc.m.Attached && tc.m.Proof != nil) {
				t.Fatalf("decoded %+v", got)
			}
			if got.Proof != nil && (*got.Proof != *pr || !got.Proof.Timestamp.Equal(at)) {
				t.Fatalf("proof %+v, want %+v", got.Proof, pr)
			}
		})
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, m := range append(sampleMsgMessages(t), sampleMessages(t)...) {
		b := EncodeEnvelope(m)
		got, err := DecodeEnvelope(b)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if !bytes.Equal(EncodeEnvelope(got), b) {
			t.Fatalf("%T: re-encoding differs", m)
		}
		var buf bytes.Buffer
		if err := WriteEnvelope(&buf, m); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadEnvelope(&buf); err != nil {
			t.Fatalf("%T: frame: %v", m, err)
		}
	}
}

// TestEnvelopeRejects: oversized frames and fields are refused before allocation, with
// ErrTooLarge; malformed ones with ErrMalformed; nothing panics.
func TestEnvelopeRejects(t *testing.T) {
	frame := func(n uint32, body []byte) *bytes.Reader {
		return bytes.NewReader(append(binary.BigEndian.AppendUint32(nil, n), body...))
	}
	if _, err := ReadEnvelope(frame(MaxEnvelopeSize+1, nil)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	if _, err := ReadEnvelope(frame(math.MaxUint32, nil)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("4 GiB frame: %v", err)
	}
	if err := WriteEnvelope(&bytes.Buffer{}, &Send{To: "w", Capability: "c", Body: make([]byte, MaxEnvelopeSize)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("write oversized: %v", err)
	}
	send := EncodeEnvelope(&Send{To: "w", Capability: "c", Body: []byte("x")})
	bodyLen := len(send) - 1 - 4
	big := append([]byte(nil), send[:bodyLen]...)
	big = binary.BigEndian.AppendUint32(big, MaxBodySize+1)
	deliver := EncodeEnvelope(sampleMsgMessages(t)[4])
	located := EncodeEnvelope(&Located{Attached: true, Proof: samplePresence(time.Unix(1, 0))})
	for name, tc := range map[string]struct {
		b    []byte
		want error
		msg  string // in the error, if set
	}{
		"body over cap":       {big, ErrTooLarge, ""},
		"truncated":           {send[:len(send)-1], ErrMalformed, ""},
		"trailing":            {append(append([]byte(nil), send...), 0), ErrMalformed, ""},
		"unknown type":        {[]byte{99}, ErrMalformed, ""},
		"empty":               {nil, ErrMalformed, ""},
		"bad hop":             {EncodeEnvelope(&MsgRefusal{Code: "x", Hop: 9}), ErrMalformed, ""},
		"empty code":          {EncodeEnvelope(&MsgRefusal{Hop: HopReceiver}), ErrMalformed, ""},
		"located 3":           {[]byte{byte(typeLocated), 3}, ErrMalformed, "located state 3"},
		"located no proof":    {[]byte{byte(typeLocated), 2}, ErrMalformed, "located proof nonce: 0 of 32 bytes"},
		"located cut in ts":   {located[:2+NonceSize+7], ErrMalformed, "located proof timestamp: 7 of 8 bytes"},
		"located cut in sig":  {located[:len(located)-1], ErrMalformed, "located proof signature: 63 of 64 bytes"},
		"located trailing":    {append(append([]byte(nil), located...), 0), ErrMalformed, "1 trailing bytes"},
		"unattached proof":    {append([]byte{byte(typeLocated), 0}, located[2:]...), ErrMalformed, "trailing bytes"},
		"old format trailing": {append([]byte{byte(typeLocated), 1}, located[2:]...), ErrMalformed, "trailing bytes"},
		"bad peer id":         {EncodeEnvelope(&Locate{Agent: "nope"}), ErrMalformed, ""},
		"deliver cut":         {deliver[:20], ErrMalformed, ""},
		"event no kind":       {EncodeEnvelope(&Report{Events: []Event{{Name: "x"}}}), ErrMalformed, ""},
		"too many events":     {append([]byte{byte(typeReport), MaxEvents + 1}, make([]byte, 10)...), ErrTooLarge, ""},
		"attrs unordered":     {reportWithAttrs("b", "a"), ErrMalformed, ""},
		"to over cap":         {append([]byte{byte(typeSend)}, binary.BigEndian.AppendUint16(nil, MaxToLen+1)...), ErrTooLarge, ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeEnvelope(tc.b)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrMalformed) || !strings.Contains(fmt.Sprint(err), tc.msg) {
				t.Fatalf("err = %v, want %v (and ErrMalformed) saying %q", err, tc.want, tc.msg)
			}
		})
	}
}

func reportWithAttrs(keys ...string) []byte {
	b := []byte{byte(typeReport), 1}
	str := func(s string) { b = append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...) }
	str("metric")
	str("x")
	b = binary.BigEndian.AppendUint64(b, 0)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = append(b, byte(len(keys)))
	for _, k := range keys {
		str(k)
		str("v")
	}
	return b
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, m := range sampleMsgMessages(f) {
		if b := EncodeEnvelope(m); len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Add(reportWithAttrs("a", "b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(EncodeEnvelope(m), b) {
			t.Fatalf("%T: re-encoding differs from the input", m)
		}
		// And through a frame.
		var buf bytes.Buffer
		if err := WriteEnvelope(&buf, m); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadEnvelope(&buf); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAuthorize(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	later := now.Add(time.Hour)
	agent := func(name string, caps []string, labels map[string]string) identity.Agent {
		return identity.Agent{Name: name, Capabilities: caps, Labels: labels, Status: identity.StatusActive, ExpiresAt: later}
	}
	dest := agent("worker", nil, map[string]string{"site": "north", "role": "db"})
	for _, tc := range []struct {
		name   string
		sender identity.Agent
		dest   identity.Agent
		cap    string
		code   string // "" = allowed
	}{
		{"by name", agent("p", []string{"ask:worker"}, nil), dest, "ask", ""},
		{"wildcard", agent("p", []string{"ask:*"}, nil), dest, "ask", ""},
		{"label", agent("p", []string{"ask:site=north"}, nil), dest, "ask", ""},
		{"label other value", agent("p", []string{"ask:site=south"}, nil), dest, "ask", CodeNoCapability},
		{"label missing", agent("p", []string{"ask:zone=north"}, nil), dest, "ask", CodeNoCapability},
		{"other action", agent("p", []string{"tell:worker", "tell:*"}, nil), dest, "ask", CodeNoCapability},
		{"other agent", agent("p", []string{"ask:workers"}, nil), dest, "ask", CodeNoCapability},
		{"bare action grants nothing", agent("p", []string{"ask"}, nil), dest, "ask", CodeNoCapability},
		{"prefix is not a match", agent("p", []string{"as:worker"}, nil), dest, "ask", CodeNoCapability},
		{"no caps", agent("p", nil, nil), dest, "ask", CodeNoCapability},
		{"capability with target", agent("p", []string{"ask:worker"}, nil), dest, "ask:worker", CodeBadMessage},
		{"empty capability", agent("p", []string{"ask:worker"}, nil), dest, "", CodeBadMessage},
		{"sender revoked", func() identity.Agent {
			a := agent("p", []string{"ask:*"}, nil)
			a.Status = identity.StatusRevoked
			return a
		}(), dest, "ask", CodeSenderInactive},
		{"sender expired", func() identity.Agent { a := agent("p", []string{"ask:*"}, nil); a.ExpiresAt = now; return a }(), dest, "ask", CodeSenderInactive},
		{"dest quarantined", agent("p", []string{"ask:*"}, nil), func() identity.Agent { d := dest; d.Status = identity.StatusQuarantined; return d }(), "ask", CodeDestinationInactive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Authorize(tc.sender, tc.dest, tc.cap, now, HopReceiverNode)
			switch {
			case tc.code == "" && r != nil:
				t.Fatalf("refused: %+v", r)
			case tc.code != "" && (r == nil || r.Code != tc.code || r.Hop != HopReceiverNode || r.Rule == ""):
				t.Fatalf("got %+v, want code %s", r, tc.code)
			}
		})
	}
	r := Authorize(agent("planner", nil, nil), dest, "ask", now, HopSenderNode)
	if r.Rule != "capability ask:worker not held by planner" || !strings.Contains(r.Reason, "ask:*") {
		t.Fatalf("rule %q reason %q", r.Rule, r.Reason)
	}
}

// TestAuthorizeMatchesReference: over random capability sets, labels and names, Authorize
// allows exactly what a naive reading of the rule allows: the set of granting strings
// {C:D, C:*, C:k=v for each label of D} intersects the sender's capabilities.
func TestAuthorizeMatchesReference(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	rng := mrand.New(mrand.NewPCG(1, 2))
	actions := []string{"ask", "tell", "as"}
	names := []string{"a", "b", "ab"}
	labels := []string{"site=n", "site=s", "role=db", "role="}
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	for i := range 20_000 {
		var caps []string
		for range rng.IntN(5) {
			switch rng.IntN(5) {
			case 0:
				caps = append(caps, pick(actions)) // bare action
			case 1:
				caps = append(caps, pick(actions)+":*")
			case 2:
				caps = append(caps, pick(actions)+":"+pick(labels))
			default:
				caps = append(caps, pick(actions)+":"+pick(names))
			}
		}
		slices.Sort(caps)
		caps = slices.Compact(caps)
		dest := identity.Agent{Name: pick(names), Status: identity.StatusActive, ExpiresAt: now.Add(time.Hour), Labels: map[string]string{}}
		for range rng.IntN(3) {
			k, v, _ := strings.Cut(pick(labels), "=")
			dest.Labels[k] = v
		}
		c := pick(actions)
		grants := map[string]bool{c + ":" + dest.Name: true, c + ":*": true}
		for k, v := range dest.Labels {
			grants[c+":"+k+"="+v] = true
		}
		want := false
		for _, x := range caps {
			want = want || grants[x]
		}
		sender := identity.Agent{Name: "s", Capabilities: caps, Status: identity.StatusActive, ExpiresAt: now.Add(time.Hour)}
		r := Authorize(sender, dest, c, now, HopSenderNode)
		if got := r == nil; got != want || (r != nil && r.Code != CodeNoCapability) {
			t.Fatalf("case %d: caps %v, dest %s %v, capability %s: allowed=%v (%+v), reference %v", i, caps, dest.Name, dest.Labels, c, got, r, want)
		}
	}
}
