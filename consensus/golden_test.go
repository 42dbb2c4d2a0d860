package consensus

import (
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// TestWireGolden freezes the bytes of the node-to-node protocols and of the FSM snapshot header:
// a change here is a protocol change (bump the protocol IDs). Regenerate with -update.
func TestWireGolden(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
	}{
		{"propose request", encodeProposeRequest([]byte("command-bytes"))},
		{"result applied", encodeResult(resultFor(42, nil))},
		{"result not leader", encodeResult(wireResult{Code: "consensus.not_leader", Detail: "not the leader"})},
		{"result replay", encodeResult(wireResult{Index: 7, Code: identity.CodeOf(identity.ErrReplay), Detail: "nonce used"})},
		{"join response", encodeJoinResponse(joinResponse{Leader: "12D3KooLeader", Nodes: []joinNode{
			{ID: "12D3KooA", Addrs: []string{"/ip4/127.0.0.1/tcp/7400"}}, {ID: "12D3KooB"}}})},
		{"snapshot header", encodeSnapshotHeader(99, time.Unix(1_700_000_000, 5).UTC())},
	}
	var sb strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&sb, "%s\n%s\n", c.name, hex.EncodeToString(c.b))
	}
	path := filepath.Join("testdata", "wire.golden")
	if *update {
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := sb.String(); got != string(want) {
		t.Fatalf("wire encoding changed:\n got:\n%s\nwant:\n%s", got, want)
	}
}
