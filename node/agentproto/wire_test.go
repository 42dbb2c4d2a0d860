package agentproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

func sampleMessages(tb testing.TB) []Message {
	tb.Helper()
	sp, err := identity.NewAgentSPIFFEID("test.vigil", "alpha")
	if err != nil {
		tb.Fatal(err)
	}
	node := mustKey(tb).ID().Peer()
	ch := &Challenge{Timestamp: time.Unix(0, 1_700_000_000_123_456_789).UTC(), Node: node}
	ch.Nonce[5] = 9
	pr := &Proof{}
	pr.Signature[63] = 1
	return []Message{
		&AttachRequest{Version: 1},
		&Registration{Name: "alpha", SPIFFE: sp, Labels: map[string]string{"site": "s1", "role": "demo"},
			Capabilities: []string{"message:b", "tool:search"}, Status: identity.StatusActive,
			ExpiresAt: time.Unix(0, 1_800_000_000_000_000_000).UTC(), ReverifyInterval: 30 * time.Second},
		&Registration{Name: "bare", SPIFFE: sp, Status: identity.StatusActive, ExpiresAt: time.Unix(1, 0).UTC()},
		&Refusal{Code: CodeRevoked, Reason: "stolen key"},
		ch,
		pr,
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range sampleMessages(t) {
		b := Encode(m)
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if !bytes.Equal(Encode(got), b) {
			t.Fatalf("%T: re-encoding differs", m)
		}
		var buf bytes.Buffer
		if err := WriteMessage(&buf, m); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadMessage(&buf); err != nil {
			t.Fatalf("%T: frame: %v", m, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	msgs := sampleMessages(t)
	reg := Encode(msgs[1])
	str := func(s string) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...) }
	regWith := func(labels [][2]string, caps []string) []byte {
		b := []byte{byte(typeRegistration), byte(identity.StatusActive)}
		b = append(b, str("alpha")...)
		b = append(b, str("spiffe://test.vigil/agent/alpha")...)
		b = binary.BigEndian.AppendUint64(b, 1)
		b = binary.BigEndian.AppendUint64(b, 1)
		b = append(b, byte(len(labels)))
		for _, l := range labels {
			b = append(append(b, str(l[0])...), str(l[1])...)
		}
		b = append(b, byte(len(caps)))
		for _, c := range caps {
			b = append(b, str(c)...)
		}
		return b
	}
	if _, err := Decode(regWith([][2]string{{"a", "1"}}, []string{"x"})); err != nil {
		t.Fatalf("control: %v", err)
	}
	tests := []struct {
		name  string
		b     []byte
		large bool
	}{
		{"empty", nil, false},
		{"unknown type", []byte{99}, false},
		{"attach version 2", []byte{byte(typeAttach), 2}, false},
		{"attach trailing byte", []byte{byte(typeAttach), 1, 0}, false},
		{"registration truncated", reg[:len(reg)-1], false},
		{"registration trailing", append(append([]byte{}, reg...), 0), false},
		{"labels unsorted", regWith([][2]string{{"b", "1"}, {"a", "2"}}, nil), false},
		{"labels duplicate", regWith([][2]string{{"a", "1"}, {"a", "2"}}, nil), false},
		{"label key too long", regWith([][2]string{{strings.Repeat("k", 64), "1"}}, nil), true},
		{"too many labels", append(regWith(nil, nil)[:len(regWith(nil, nil))-2], 33, 0), true},
		{"caps unsorted", regWith(nil, []string{"z", "a"}), false},
		{"empty capability", regWith(nil, []string{""}), false},
		{"bad status", append([]byte{byte(typeRegistration), 9}, reg[2:]...), false},
		{"refusal code 0", append([]byte{byte(typeRefusal), 0}, str("x")...), false},
		{"refusal reason too long", append([]byte{byte(typeRefusal), 1}, str(strings.Repeat("r", MaxReasonLen+1))...), true},
		{"challenge node not an id", append(Encode(msgs[4])[:1+32+8], str("nope")...), false},
		{"proof short", Encode(msgs[5])[:60], false},
		{"oversized body", make([]byte, MaxMessageSize+1), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.b)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode = %v, want ErrMalformed", err)
			}
			if tc.large && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Decode = %v, want ErrTooLarge", err)
			}
		})
	}
}

func TestReadMessageCapsFrame(t *testing.T) {
	frame := binary.BigEndian.AppendUint32(nil, 1<<31) // claims 2 GiB, sends nothing
	if _, err := ReadMessage(bytes.NewReader(frame)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadMessage = %v, want ErrTooLarge", err)
	}
}

func TestReverifyBytesBindEverything(t *testing.T) {
	var n1, n2 [NonceSize]byte
	n2[0] = 1
	a, b := mustKey(t).ID().Peer(), mustKey(t).ID().Peer()
	ts := time.Unix(100, 0)
	base := ReverifyBytes(n1, a, b, ts)
	if !bytes.HasPrefix(base, []byte(ReverifyDomain)) {
		t.Fatal("no domain prefix")
	}
	for name, other := range map[string][]byte{
		"nonce": ReverifyBytes(n2, a, b, ts), "swapped ids": ReverifyBytes(n1, b, a, ts),
		"time": ReverifyBytes(n1, a, b, ts.Add(time.Nanosecond)),
	} {
		if bytes.Equal(base, other) {
			t.Fatalf("%s does not change the signed bytes", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages(f) {
		f.Add(Encode(m))
	}
	f.Add([]byte{byte(typeRefusal), 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(Encode(m), b) { // canonical: one encoding per message
			t.Fatalf("%T: re-encoding differs from the input", m)
		}
		if c, ok := m.(*Challenge); ok {
			if _, err := identity.IDFromPeer(c.Node); err != nil {
				t.Fatal("decoded a challenge with a bad node id")
			}
		}
	})
}
