package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/gossip"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// keyringTB hands startE2EClusterYAML a root folder in which every node's data directory
// already holds the same gossip keyring file (gossip.keyring, relative to node.data_dir).
type keyringTB struct {
	testing.TB
	root string
}

func (k keyringTB) TempDir() string { return k.root }

// gossipKeyringYAML: gossip on, encrypted with each node's own copy of the keyring.
const gossipKeyringYAML = "gossip:\n  enabled: true\n  bind: 127.0.0.1:0\n  profile: lan\n  keyring: gossip.keyring\n"

func startKeyringCluster(t *testing.T, size int) (*e2eCluster, []byte) {
	t.Helper()
	root := t.TempDir()
	key, err := gossip.GenerateKeyringKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for i := range size {
		if err := gossip.WriteKeyring(filepath.Join(root, fmt.Sprintf("node-%d", i+1), "gossip.keyring"), [][]byte{key}); err != nil {
			t.Fatal(err)
		}
	}
	c := startE2EClusterYAML(keyringTB{t, root}, size, gossipKeyringYAML)
	c.joinGossip()
	return c, key
}

func (c *e2eCluster) adminClient(i int, key identity.PrivateKey) client.Client {
	c.tb.Helper()
	n := c.nodes[i]
	ac, err := client.Dial(n.AdminAddr().String(), n.ID().Peer(), key)
	if err != nil {
		c.tb.Fatal(err)
	}
	return ac
}

// gossipStates returns node name → gossip_state from ListMembers on client ac.
func gossipStates(t testing.TB, ac client.Client) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := ac.ListMembers(ctx, connect.NewRequest(&adminv1.ListMembersRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range resp.Msg.Members {
		out[m.Name] = m.GossipState
	}
	return out
}

// TestMembersGossipState: ListMembers shows every member alive in the answering node's mesh;
// a stopped node turns dead; a node without gossip answers "off".
func TestMembersGossipState(t *testing.T) {
	c := startE2EClusterYAML(t, 3, gossipYAML)
	c.joinGossip()
	ac := c.adminClient(0, c.op)
	if got := gossipStates(t, ac); got["node-1"] != "alive" || got["node-2"] != "alive" || got["node-3"] != "alive" {
		t.Fatalf("gossip states %v, want all alive", got)
	}
	c.stop(2)
	var got map[string]string
	waitUntil(t, "node-3 to be dead in node-1's view", func() bool {
		got = gossipStates(t, ac)
		return got["node-3"] == "dead"
	})
	if got["node-1"] != "alive" || got["node-2"] != "alive" {
		t.Fatalf("gossip states %v after node-3 stopped", got)
	}
}

func TestMembersGossipOff(t *testing.T) {
	c := startE2ECluster(t, 1)
	if got := gossipStates(t, c.adminClient(0, c.op)); got["node-1"] != "off" {
		t.Fatalf("gossip states %v, want off", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.adminClient(0, c.op).GossipKeys(ctx, connect.NewRequest(&adminv1.GossipKeysRequest{}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "gossip.enabled") {
		t.Fatalf("GossipKeys without gossip: %v", err)
	}
}

func changeKey(t testing.TB, ac client.Client, req *adminv1.ChangeGossipKeyRequest) *adminv1.ChangeGossipKeyResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := ac.ChangeGossipKey(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatalf("ChangeGossipKey %s: %v", req.Op, err)
	}
	if resp.Msg.Failed != 0 || len(resp.Msg.Nodes) == 0 {
		t.Fatalf("ChangeGossipKey %s: %d failed: %v", req.Op, resp.Msg.Failed, resp.Msg.Nodes)
	}
	return resp.Msg
}

func listKeys(t testing.TB, ac client.Client) *adminv1.GossipKeysResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := ac.GossipKeys(ctx, connect.NewRequest(&adminv1.GossipKeysRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg
}

func allAlive(t testing.TB, c *e2eCluster, what string) {
	t.Helper()
	for i, n := range c.nodes {
		if n == nil {
			continue
		}
		got := gossipStates(t, c.adminClient(i, c.op))
		for name, st := range got {
			if st != "alive" {
				t.Fatalf("%s: node-%d sees %s %q (%v)", what, i+1, name, st, got)
			}
		}
	}
}

// TestGossipKeyRotation: install a new key everywhere through one node, use it, remove the old
// one: every node applies each step (and its file), members stay alive throughout, and a node
// restarted afterwards still joins the mesh with its persisted keyring.
func TestGossipKeyRotation(t *testing.T) {
	c, oldKey := startKeyringCluster(t, 3)
	ac := c.adminClient(0, c.op)
	oldFP := gossip.KeyFingerprint(oldKey)
	l := listKeys(t, ac)
	if len(l.Keys) != 1 || l.Keys[0].Fingerprint != oldFP || l.Keys[0].Nodes != 3 || l.Keys[0].PrimaryOn != 3 {
		t.Fatalf("initial keys %v", l.Keys)
	}
	newKey, err := gossip.GenerateKeyringKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	newFP := gossip.KeyFingerprint(newKey)

	r := changeKey(t, ac, &adminv1.ChangeGossipKeyRequest{Op: "install", Key: newKey})
	if len(r.Nodes) != 3 {
		t.Fatalf("install answered by %d nodes", len(r.Nodes))
	}
	for _, nr := range r.Nodes {
		if !slices.Equal(nr.Fingerprints, []string{oldFP, newFP}) {
			t.Fatalf("after install %s holds %v", nr.NodeName, nr.Fingerprints)
		}
	}
	allAlive(t, c, "after install")

	changeKey(t, ac, &adminv1.ChangeGossipKeyRequest{Op: "use", Fingerprint: newFP})
	l = listKeys(t, ac)
	for _, k := range l.Keys {
		if k.Fingerprint == newFP && k.PrimaryOn != 3 || k.Fingerprint == oldFP && k.PrimaryOn != 0 {
			t.Fatalf("after use: %v", l.Keys)
		}
	}
	// Gossip keeps flowing under the new primary key.
	time.Sleep(3 * time.Second)
	allAlive(t, c, "after use")

	// The primary key cannot be removed; nothing changes.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := ac.ChangeGossipKey(ctx, connect.NewRequest(&adminv1.ChangeGossipKeyRequest{Op: "remove", Fingerprint: newFP})); connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "primary") {
		t.Fatalf("removing the primary key: %v", err)
	}

	changeKey(t, ac, &adminv1.ChangeGossipKeyRequest{Op: "remove", Fingerprint: oldFP})
	l = listKeys(t, ac)
	if len(l.Keys) != 1 || l.Keys[0].Fingerprint != newFP || l.Keys[0].Nodes != 3 {
		t.Fatalf("after remove: %v", l.Keys)
	}
	for i := range c.nodes {
		keys, err := gossip.LoadKeyring(c.cfgs[i].Gossip.Keyring)
		if err != nil || len(keys) != 1 || !bytes.Equal(keys[0], newKey) {
			t.Fatalf("node-%d keyring file: %d keys, %v", i+1, len(keys), err)
		}
	}
	time.Sleep(3 * time.Second)
	allAlive(t, c, "after remove")

	// node-3 restarts from its file and rejoins the mesh, which now speaks only the new key.
	c.stop(2)
	n := c.start(2)
	if _, err := n.GossipJoin([]string{c.nodes[0].GossipAddr()}); err != nil {
		t.Fatalf("restarted node-3 cannot join: %v", err)
	}
	waitUntil(t, "node-3 back in every mesh", func() bool {
		for _, m := range c.nodes {
			if m.GossipStats().Members != 3 {
				return false
			}
		}
		return true
	})
	if got := gossipStates(t, ac); got["node-3"] != "alive" {
		t.Fatalf("after restart: %v", got)
	}
}

// TestGossipKeyRefused: a bad key or fingerprint is refused with an error naming the field, and
// no keyring changes; agent and node identities may not call the keyring methods.
func TestGossipKeyRefused(t *testing.T) {
	c, key := startKeyringCluster(t, 2)
	ac := c.adminClient(0, c.op)
	fp := gossip.KeyFingerprint(key)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		req   *adminv1.ChangeGossipKeyRequest
		field string
	}{
		{&adminv1.ChangeGossipKeyRequest{Op: "install", Key: make([]byte, 20)}, "key"},
		{&adminv1.ChangeGossipKeyRequest{Op: "install"}, "key"},
		{&adminv1.ChangeGossipKeyRequest{Op: "use", Fingerprint: "zz"}, "fingerprint"},
		{&adminv1.ChangeGossipKeyRequest{Op: "remove", Fingerprint: strings.Repeat("ab", 8)}, "fingerprint"},
		{&adminv1.ChangeGossipKeyRequest{Op: "rotate"}, "op"},
	} {
		_, err := ac.ChangeGossipKey(ctx, connect.NewRequest(tc.req))
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s %x %q: want an error naming %s, got %v", tc.req.Op, tc.req.Key, tc.req.Fingerprint, tc.field, err)
		}
	}
	l := listKeys(t, ac)
	if len(l.Keys) != 1 || l.Keys[0].Fingerprint != fp || l.Keys[0].Nodes != 2 {
		t.Fatalf("keys changed: %v", l.Keys)
	}
	agentKey := c.register("worker")
	newKey, _ := gossip.GenerateKeyringKey(rand.Reader)
	for name, k := range map[string]identity.PrivateKey{"agent": agentKey, "node": c.nodes[1].key} {
		_, err := c.adminClient(0, k).ChangeGossipKey(ctx, connect.NewRequest(&adminv1.ChangeGossipKeyRequest{Op: "install", Key: newKey}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s identity called ChangeGossipKey: %v", name, err)
		}
	}
	// An agent that opens the node-to-node keyring protocol itself is refused before it is read.
	ah := newAgentHost(t, agentKey)
	ah.Peerstore().AddAddrs(c.nodes[0].Host().ID(), c.nodes[0].Host().Addrs(), time.Minute)
	if s, err := ah.NewStream(ctx, c.nodes[0].Host().ID(), KeyringProtocol); err == nil {
		_, _ = s.Write(append([]byte{keyringOpInstall, byte(len(newKey))}, newKey...))
		if n, err := s.Read(make([]byte, 16)); err == nil || n > 0 {
			t.Errorf("an agent's keyring stream was answered (%d bytes, %v)", n, err)
		}
	}
	// An admitted node that sends an argument over the cap, or an unknown op, is refused.
	for _, frame := range [][]byte{append([]byte{keyringOpInstall, 200}, make([]byte, 200)...), {9, 0}} {
		s, err := c.nodes[1].Host().NewStream(ctx, c.nodes[0].Host().ID(), KeyringProtocol)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = s.Write(frame)
		reply, _ := io.ReadAll(io.LimitReader(s, 1024))
		s.Close()
		if len(reply) < 3 || reply[0] != 1 || !(strings.Contains(string(reply), "max 64") || strings.Contains(string(reply), "unknown op")) {
			t.Errorf("frame % x...: reply %q", frame[:2], reply)
		}
	}
	for i := range c.nodes {
		if got := c.nodes[i].gossip.mesh.KeyFingerprints(); !slices.Equal(got, []string{fp}) {
			t.Fatalf("node-%d keys %v", i+1, got)
		}
	}
	raw, err := os.ReadFile(c.cfgs[0].Gossip.Keyring)
	if err != nil || strings.Count(string(raw), "\n") != 2 {
		t.Fatalf("keyring file changed: %q %v", raw, err)
	}
}
