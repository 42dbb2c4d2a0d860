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
	"github.com/libp2p/go-libp2p/core/protocol"

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

// signedOp builds a keyring op for c's cluster issued at at, signed by signer (as the CLI does
// with the operator key).
func (c *e2eCluster) signedOp(signer identity.PrivateKey, kind identity.KeyringOpKind, arg []byte, at time.Time) *identity.KeyringOp {
	c.tb.Helper()
	op, err := identity.NewKeyringOp(c.cid, kind, arg, at, rand.Reader)
	if err != nil {
		c.tb.Fatal(err)
	}
	if err := op.Sign(signer); err != nil {
		c.tb.Fatal(err)
	}
	return op
}

// keyReq is the ChangeGossipKey request the CLI sends: the op, and the op signed by c's operator.
func (c *e2eCluster) keyReq(kind identity.KeyringOpKind, arg []byte) *adminv1.ChangeGossipKeyRequest {
	c.tb.Helper()
	req := &adminv1.ChangeGossipKeyRequest{Op: kind.String(), SignedOp: c.signedOp(c.op, kind, arg, time.Now()).Encode()}
	if kind == identity.KeyringInstall {
		req.Key = arg
	} else {
		req.Fingerprint = string(arg)
	}
	return req
}

// sendKeyringFrame opens KeyringProtocol from node from to node to, sends one request and
// returns the answer's status and text.
func sendKeyringFrame(t testing.TB, from, to *Node, frame []byte) (byte, string) {
	t.Helper()
	return sendOpFrame(t, KeyringProtocol, from, to, frame)
}

// sendOpFrame opens proto from node from to node to, sends one request and returns the
// answer's status and body.
func sendOpFrame(t testing.TB, proto protocol.ID, from, to *Node, frame []byte) (byte, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	from.Host().Peerstore().AddAddrs(to.Host().ID(), to.Host().Addrs(), time.Minute)
	s, err := from.Host().NewStream(ctx, to.Host().ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _ = s.Write(frame)
	reply, _ := io.ReadAll(io.LimitReader(s, 16<<10))
	if len(reply) < 3 {
		t.Fatalf("frame % x...: short reply %q", frame[:min(3, len(frame))], reply)
	}
	return reply[0], string(reply[3:])
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

	r := changeKey(t, ac, c.keyReq(identity.KeyringInstall, newKey))
	if len(r.Nodes) != 3 {
		t.Fatalf("install answered by %d nodes", len(r.Nodes))
	}
	for _, nr := range r.Nodes {
		if !slices.Equal(nr.Fingerprints, []string{oldFP, newFP}) {
			t.Fatalf("after install %s holds %v", nr.NodeName, nr.Fingerprints)
		}
	}
	allAlive(t, c, "after install")

	changeKey(t, ac, c.keyReq(identity.KeyringUse, []byte(newFP)))
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
	if _, err := ac.ChangeGossipKey(ctx, connect.NewRequest(c.keyReq(identity.KeyringRemove, []byte(newFP)))); connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "primary") {
		t.Fatalf("removing the primary key: %v", err)
	}

	changeKey(t, ac, c.keyReq(identity.KeyringRemove, []byte(oldFP)))
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
		{c.keyReq(identity.KeyringRemove, []byte(strings.Repeat("ab", 8))), "fingerprint"},
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
		_, err := c.adminClient(0, k).ChangeGossipKey(ctx, connect.NewRequest(c.keyReq(identity.KeyringInstall, newKey)))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s identity called ChangeGossipKey: %v", name, err)
		}
	}
	// An agent that opens the node-to-node keyring protocol itself is refused before it is read.
	ah := newAgentHost(t, agentKey)
	ah.Peerstore().AddAddrs(c.nodes[0].Host().ID(), c.nodes[0].Host().Addrs(), time.Minute)
	if s, err := ah.NewStream(ctx, c.nodes[0].Host().ID(), KeyringProtocol); err == nil {
		_, _ = s.Write(opFrame(keyringFrameChange, c.keyReq(identity.KeyringInstall, newKey).SignedOp))
		if n, err := s.Read(make([]byte, 16)); err == nil || n > 0 {
			t.Errorf("an agent's keyring stream was answered (%d bytes, %v)", n, err)
		}
	}
	// An admitted node that sends a body over the cap, a list with a body, or an unknown kind,
	// is refused.
	for _, tc := range []struct {
		frame []byte
		want  string
	}{
		{opFrame(keyringFrameChange, make([]byte, 300)), fmt.Sprintf("max %d", identity.MaxKeyringOpSize)},
		{opFrame(keyringFrameList, []byte{1}), "list takes no body"},
		{opFrame(9, nil), "unknown request kind"},
	} {
		if st, text := sendKeyringFrame(t, c.nodes[1], c.nodes[0], tc.frame); st != 1 || !strings.Contains(text, tc.want) {
			t.Errorf("frame % x...: reply %d %q, want %q", tc.frame[:3], st, text, tc.want)
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

// TestGossipKeyForged: an admitted node cannot change another node's keyring without an
// operator's signature: unsigned, node-signed, altered, stale and replayed ops sent straight
// over KeyringProtocol are refused with the reason and nothing changes; the admin API refuses a
// request without a signed op, or whose signed op says something else. An operator-signed op
// reaches every node, and replaying its bytes (over the protocol or the admin API) is refused.
func TestGossipKeyForged(t *testing.T) {
	c, key := startKeyringCluster(t, 3)
	fp := gossip.KeyFingerprint(key)
	newKey, err := gossip.GenerateKeyringKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	newFP := gossip.KeyFingerprint(newKey)
	unchanged := func(what string) {
		t.Helper()
		for i, n := range c.nodes {
			if got := n.gossip.mesh.KeyFingerprints(); !slices.Equal(got, []string{fp}) {
				t.Fatalf("%s: node-%d keys %v", what, i+1, got)
			}
		}
	}
	altered := c.signedOp(c.op, identity.KeyringInstall, newKey, time.Now())
	altered.Arg = bytes.Repeat([]byte{1}, 32)
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"unsigned", nil, "no operator signature"},
		{"signed by the sending node", c.signedOp(c.keys[1], identity.KeyringInstall, newKey, time.Now()).Encode(), "not an operator"},
		{"altered after signing", altered.Encode(), "does not verify"},
		{"stale", c.signedOp(c.op, identity.KeyringInstall, newKey, time.Now().Add(-11*time.Minute)).Encode(), "stale"},
		{"from the future", c.signedOp(c.op, identity.KeyringInstall, newKey, time.Now().Add(5*time.Minute)).Encode(), "from the future"},
		{"garbage", []byte{1, 2, 3}, "malformed"},
	} {
		if st, text := sendKeyringFrame(t, c.nodes[1], c.nodes[0], opFrame(keyringFrameChange, tc.body)); st != 1 || !strings.Contains(text, tc.want) {
			t.Errorf("%s: reply %d %q, want a refusal saying %q", tc.name, st, text, tc.want)
		}
	}
	unchanged("after forged ops")

	ac := c.adminClient(0, c.op)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	signed := c.keyReq(identity.KeyringInstall, newKey)
	for _, tc := range []struct {
		name string
		req  *adminv1.ChangeGossipKeyRequest
		code connect.Code
		want string
	}{
		{"no signed op", &adminv1.ChangeGossipKeyRequest{Op: "install", Key: newKey}, connect.CodeInvalidArgument, "signed_op"},
		{"signed op for another key", &adminv1.ChangeGossipKeyRequest{Op: "install", Key: bytes.Repeat([]byte{2}, 32), SignedOp: signed.SignedOp}, connect.CodeInvalidArgument, "signed_op"},
		{"signed op for another op", &adminv1.ChangeGossipKeyRequest{Op: "use", Fingerprint: fp, SignedOp: signed.SignedOp}, connect.CodeInvalidArgument, "signed_op"},
		{"signed by a node", &adminv1.ChangeGossipKeyRequest{Op: "install", Key: newKey, SignedOp: c.signedOp(c.keys[0], identity.KeyringInstall, newKey, time.Now()).Encode()}, connect.CodePermissionDenied, "not an operator"},
	} {
		_, err := ac.ChangeGossipKey(ctx, connect.NewRequest(tc.req))
		if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %s naming %q", tc.name, err, tc.code, tc.want)
		}
	}
	unchanged("after refused admin requests")

	// The operator's op reaches every node, each of which checked the signature.
	r := changeKey(t, ac, signed)
	if len(r.Nodes) != 3 {
		t.Fatalf("install answered by %d nodes", len(r.Nodes))
	}
	for i, n := range c.nodes {
		if got := n.gossip.mesh.KeyFingerprints(); !slices.Equal(got, []string{fp, newFP}) {
			t.Fatalf("node-%d keys %v after a signed install", i+1, got)
		}
	}
	// Replays of the same signed bytes are refused: by a node over the protocol, and through
	// the admin API of any node.
	if st, text := sendKeyringFrame(t, c.nodes[1], c.nodes[2], opFrame(keyringFrameChange, signed.SignedOp)); st != 1 || !strings.Contains(text, "replayed nonce") {
		t.Errorf("replay over the protocol: reply %d %q", st, text)
	}
	for i := range c.nodes {
		_, err := c.adminClient(i, c.op).ChangeGossipKey(ctx, connect.NewRequest(signed))
		if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "replayed nonce") {
			t.Errorf("replay through node-%d's admin API: %v", i+1, err)
		}
	}
	// A replayed "use" would have changed the primary key; a fresh one does, everywhere.
	use := c.keyReq(identity.KeyringUse, []byte(newFP))
	changeKey(t, ac, use)
	changeKey(t, ac, c.keyReq(identity.KeyringUse, []byte(fp)))
	if st, text := sendKeyringFrame(t, c.nodes[1], c.nodes[0], opFrame(keyringFrameChange, use.SignedOp)); st != 1 || !strings.Contains(text, "replayed nonce") {
		t.Errorf("replayed use: reply %d %q", st, text)
	}
	for i, n := range c.nodes {
		if got := n.gossip.mesh.KeyFingerprints(); !slices.Equal(got, []string{fp, newFP}) {
			t.Fatalf("node-%d keys %v after a replayed use (primary first)", i+1, got)
		}
	}
}
