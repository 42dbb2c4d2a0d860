package node

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/config"
)

// testNode starts a one-node cluster from a genesis made here, on loopback with ephemeral ports.
func testNode(t *testing.T) (*Node, identity.ClusterID, identity.PrivateKey) {
	t.Helper()
	dir := t.TempDir()
	nodeKey, _ := identity.GenerateKey(rand.Reader)
	op, _ := identity.GenerateKey(rand.Reader)
	cid, _ := identity.NewClusterID(rand.Reader)
	g := &identity.Genesis{ClusterID: cid, TrustDomain: "test.vigil", Threshold: 1,
		Operators: []identity.OperatorEntry{{Name: "op", Key: op.Public()}},
		Nodes:     []identity.NodeEntry{{Name: "node-1", Key: nodeKey.Public(), Voter: true, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}}}
	gen, err := identity.NewCommand(cid, g, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	gen.Sign(op)
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteKeyFile(filepath.Join(dir, "keys", "node.key"), identity.RoleNode, nodeKey); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "genesis.bin"), gen.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "node.yaml")
	yaml := "node:\n  data_dir: " + dir + "\nlisten:\n  libp2p: [/ip4/127.0.0.1/tcp/0]\n  admin: 127.0.0.1:0\n  http: 127.0.0.1:0\n" +
		"raft:\n  heartbeat_timeout: 300ms\n  election_timeout: 300ms\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	waitFor(t, "ready", func() bool { return n.ready() == nil })
	return n, cid, op
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func propose(t *testing.T, n *Node, cid identity.ClusterID, op identity.PrivateKey, p identity.Payload) {
	t.Helper()
	cmd, err := identity.NewCommand(cid, p, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Sign(op)
	res, err := n.Consensus().Propose(context.Background(), cmd)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("%s: %v", cmd.Kind, err)
	}
}

func get(t *testing.T, n *Node, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestNodeRevokeCutsOffLiveAgent: an agent registered through the registry attaches to a real
// daemon over libp2p; revoking it closes its live connection, the gater refuses it afterwards, and
// the enforcement shows in /metrics.
func TestNodeRevokeCutsOffLiveAgent(t *testing.T) {
	n, cid, op := testNode(t)
	if code, body := get(t, n, "/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, n, "/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %q", code, body)
	}

	agentKey, _ := identity.GenerateKey(rand.Reader)
	propose(t, n, cid, op, &identity.RegisterAgent{Name: "worker", Key: agentKey.Public(),
		Capabilities: []string{"tool:search"}, ExpiresAt: time.Now().Add(time.Hour)})
	ah, err := libp2p.New(libp2p.Identity(agentKey.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ah.Close()
	agentproto.ServeReverify(ah, agentKey) // or its first challenge, right after the attach, cuts it off
	target := peer.AddrInfo{ID: n.Host().ID(), Addrs: n.Host().Addrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, "the view to hold the agent", func() bool {
		_, ok := n.views.Current().Lookup(agentKey.ID().Peer())
		return ok
	})
	reg, err := agentproto.Attach(ctx, ah, target)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if reg.Name != "worker" {
		t.Fatalf("attached as %q", reg.Name)
	}

	propose(t, n, cid, op, &identity.RevokeAgent{Name: "worker", Reason: "test"})
	waitFor(t, "the live connection to close", func() bool { return len(n.Host().Network().ConnsToPeer(agentKey.ID().Peer())) == 0 })
	ah.Network().ClosePeer(n.Host().ID())
	if _, err := agentproto.Attach(ctx, ah, target); err == nil {
		t.Fatal("a revoked agent attached again")
	}
	_, metrics := get(t, n, "/metrics")
	for _, want := range []string{`vigil_enforcements_total{reason="revoked"} 1`, `vigil_raft_state{state="Leader"} 1`, `vigil_gater_decisions_total{direction="inbound",outcome="refused",reason="revoked"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
