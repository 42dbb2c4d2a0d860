package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/identity"
)

func TestWireRoundTrip(t *testing.T) {
	cmd := bytes.Repeat([]byte{7}, 100)
	got, err := decodeProposeRequest(bytes.NewReader(encodeProposeRequest(cmd)))
	if err != nil || !bytes.Equal(got, cmd) {
		t.Fatalf("propose request: %v", err)
	}

	for _, e := range []error{nil, identity.ErrReplay, identity.ErrTooLarge, errNotLeader, ErrTimeout, ErrNotAdmitted} {
		r, err := decodeResult(bytes.NewReader(encodeResult(resultFor(42, e))))
		if err != nil || r.Index != 42 {
			t.Fatalf("result %v: %v", e, err)
		}
		if e == nil && r.Err() != nil || e != nil && !errors.Is(r.Err(), e) {
			t.Fatalf("error %v came back as %v", e, r.Err())
		}
	}

	j := joinResponse{Leader: "L", Nodes: []joinNode{{ID: "a", Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}, {ID: "b"}}}
	gj, err := decodeJoinResponse(bytes.NewReader(encodeJoinResponse(j)))
	if err != nil || gj.Leader != "L" || len(gj.Nodes) != 2 || gj.Nodes[0].Addrs[0] != j.Nodes[0].Addrs[0] {
		t.Fatalf("join response: %+v %v", gj, err)
	}
}

func TestWireRejects(t *testing.T) {
	tooBig := encodeProposeRequest(nil)
	tooBig[0] = 0xff // claims 4 GiB: refused before allocation
	cases := []struct {
		name   string
		decode func([]byte) error
		in     []byte
		want   error
	}{
		{"oversized command", func(b []byte) error { _, err := decodeProposeRequest(bytes.NewReader(b)); return err }, tooBig, identity.ErrTooLarge},
		{"truncated command", func(b []byte) error { _, err := decodeProposeRequest(bytes.NewReader(b)); return err }, encodeProposeRequest([]byte("abc"))[:5], ErrProtocol},
		{"trailing bytes", func(b []byte) error { _, err := decodeProposeRequest(bytes.NewReader(b)); return err }, append(encodeProposeRequest([]byte("abc")), 0), ErrProtocol},
		{"oversized detail", func(b []byte) error { _, err := decodeResult(bytes.NewReader(b)); return err }, func() []byte {
			var e encoder
			e.u64(1)
			e.str("x")
			e.str(strings.Repeat("d", maxDetailLen+1))
			return e.b
		}(), ErrProtocol},
		{"too many join addrs", func(b []byte) error { _, err := decodeJoinResponse(bytes.NewReader(b)); return err }, func() []byte {
			var e encoder
			e.result(wireResult{})
			e.str("L")
			e.u16(1)
			e.str("a")
			e.u8(maxJoinAddrs + 1)
			return e.b
		}(), ErrProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.decode(tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func FuzzDecodeProposeRequest(f *testing.F) {
	f.Add(encodeProposeRequest([]byte("cmd")))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := decodeProposeRequest(bytes.NewReader(b))
		if err == nil && !bytes.Equal(encodeProposeRequest(cmd), b) {
			t.Fatal("accepted a non-canonical request")
		}
	})
}

func FuzzDecodeResult(f *testing.F) {
	f.Add(encodeResult(resultFor(3, identity.ErrStale)))
	f.Add(encodeResult(wireResult{}))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeResult(bytes.NewReader(b))
		if err == nil {
			_ = r.Err()
		}
	})
}

func FuzzDecodeJoinResponse(f *testing.F) {
	f.Add(encodeJoinResponse(joinResponse{Leader: "L", Nodes: []joinNode{{ID: "a", Addrs: []string{"/ip4/1.2.3.4/tcp/5"}}}}))
	f.Add(encodeJoinResponse(joinResponse{Result: resultFor(0, ErrNotAdmitted)}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeJoinResponse(bytes.NewReader(b))
	})
}

// TestWireResultText: an error that crossed the propose protocol reads as it did on the leader
// (the registry's text once, not "identity: identity: … version conflict: version conflict"),
// and still matches its sentinel.
func TestWireResultText(t *testing.T) {
	for _, orig := range []error{
		fmt.Errorf("identity: version: got 5, want 2: %w", identity.ErrVersionConflict),
		errf(ErrNotAdmitted, "peer x"),
		errf(ErrNoLeader, "no known leader"),
	} {
		// Two hops: a follower forwards to a leader that forwarded once already.
		r, err := decodeResult(bytes.NewReader(encodeResult(resultFor(7, orig))))
		if err != nil {
			t.Fatal(err)
		}
		r2 := resultFor(7, r.Err())
		got := r2.Err()
		want := orig.Error()
		for _, s := range []error{identity.ErrVersionConflict, ErrNotAdmitted, ErrNoLeader} {
			if errors.Is(orig, s) != errors.Is(got, s) {
				t.Fatalf("%q: errors.Is(%v) changed", got, s)
			}
		}
		sentinel := want[strings.LastIndex(want, ": ")+2:]
		if strings.Count(got.Error(), sentinel) != 1 || strings.Count(got.Error(), "identity: ")+strings.Count(got.Error(), "consensus: ") != 1 {
			t.Fatalf("rebuilt %q from %q", got, want)
		}
	}
}
