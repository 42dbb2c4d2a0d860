package admin_test

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/memberlist"

	"github.com/vigil-mesh/vigil/gossip"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
)

// keyringBackend is a one-node gossip backend over memberlist's real Keyring and a keyring
// file (the node package fans the same operations out over libp2p; node/gossip_keys_test.go
// tests that across real nodes).
type keyringBackend struct {
	mu   sync.Mutex
	id   identity.ID
	kr   *memberlist.Keyring
	path string
	ops  int
}

func newKeyringBackend(t testing.TB, id identity.ID) *keyringBackend {
	t.Helper()
	k, err := gossip.GenerateKeyringKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := memberlist.NewKeyring(nil, k)
	if err != nil {
		t.Fatal(err)
	}
	return &keyringBackend{id: id, kr: kr, path: filepath.Join(t.TempDir(), "gossip.keyring")}
}

func (b *keyringBackend) fps() []string {
	var out []string
	for _, k := range b.kr.GetKeys() {
		out = append(out, gossip.KeyFingerprint(k))
	}
	return out
}

func (b *keyringBackend) MemberStates() map[identity.ID]string {
	return map[identity.ID]string{b.id: gossip.StateAlive}
}

func (b *keyringBackend) KeyringList(context.Context) []admin.KeyringResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	return []admin.KeyringResult{{Node: b.id, Fingerprints: b.fps()}}
}

func (b *keyringBackend) KeyringChange(_ context.Context, ch admin.KeyringChange) ([]admin.KeyringResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ops++
	if ch.Op != admin.KeyringInstall {
		return nil, errors.New("only install is exercised here")
	}
	if err := b.kr.AddKey(ch.Key); err != nil {
		return nil, err
	}
	if err := gossip.WriteKeyring(b.path, b.kr.GetKeys()); err != nil {
		return nil, err
	}
	return []admin.KeyringResult{{Node: b.id, Fingerprints: b.fps()}}, nil
}

func (b *keyringBackend) LiftAll(context.Context, []byte) ([]admin.LiftResult, error) {
	return nil, errors.New("not exercised here")
}

// signedKeyringOp is a keyring op for e's cluster signed by its first operator, encoded.
func signedKeyringOp(t testing.TB, e *env, kind identity.KeyringOpKind, arg []byte) []byte {
	t.Helper()
	op, err := identity.NewKeyringOp(e.cid, kind, arg, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Sign(e.ops[0]); err != nil {
		t.Fatal(err)
	}
	return op.Encode()
}

// TestGossipKeysAdmin: GossipKeys counts each key's nodes and primaries; ChangeGossipKey refuses
// bad arguments naming the field before the backend sees them, among them a missing signed op or
// one that says something else than the request; ListMembers carries the state.
func TestGossipKeysAdmin(t *testing.T) {
	e := newEnv(t)
	c := e.tlsClient(e.ops[0])
	ctx := ctxT(t)
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	if _, err := c.ChangeGossipKey(ctx, connect.NewRequest(&adminv1.ChangeGossipKeyRequest{Op: "install", Key: key, SignedOp: signedKeyringOp(t, e, identity.KeyringInstall, key)})); err != nil {
		t.Fatal(err)
	}
	resp, err := c.GossipKeys(ctx, connect.NewRequest(&adminv1.GossipKeysRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Msg.Keys) != 2 || resp.Msg.TotalNodes != 1 || resp.Msg.Nodes[0].NodeName != "n1" {
		t.Fatalf("keys %v nodes %v", resp.Msg.Keys, resp.Msg.Nodes)
	}
	primaries := 0
	for _, k := range resp.Msg.Keys {
		if len(k.Fingerprint) != 16 || k.Nodes != 1 {
			t.Fatalf("key %v", k)
		}
		primaries += int(k.PrimaryOn)
		if k.Fingerprint == gossip.KeyFingerprint(key) && k.PrimaryOn != 0 {
			t.Fatal("an installed key became primary")
		}
	}
	if primaries != 1 {
		t.Fatalf("%d primaries", primaries)
	}
	before := e.keyring.ops
	for _, tc := range []struct {
		req   *adminv1.ChangeGossipKeyRequest
		field string
	}{
		{&adminv1.ChangeGossipKeyRequest{Op: "install", Key: make([]byte, 15)}, "key"},
		{&adminv1.ChangeGossipKeyRequest{Op: "install", Key: key, Fingerprint: "0123456789abcdef"}, "fingerprint"},
		{&adminv1.ChangeGossipKeyRequest{Op: "use", Key: key}, "key"},
		{&adminv1.ChangeGossipKeyRequest{Op: "use", Fingerprint: "0123456789ABCDEF"}, "fingerprint"},
		{&adminv1.ChangeGossipKeyRequest{Op: "remove"}, "fingerprint"},
		{&adminv1.ChangeGossipKeyRequest{Op: ""}, "op"},
		{&adminv1.ChangeGossipKeyRequest{Op: "install", Key: key}, "signed_op"},
		{&adminv1.ChangeGossipKeyRequest{Op: "install", Key: key, SignedOp: []byte{1, 2}}, "keyring op"},
		{&adminv1.ChangeGossipKeyRequest{Op: "install", Key: make([]byte, 16), SignedOp: signedKeyringOp(t, e, identity.KeyringInstall, key)}, "signed_op"},
		{&adminv1.ChangeGossipKeyRequest{Op: "use", Fingerprint: gossip.KeyFingerprint(key), SignedOp: signedKeyringOp(t, e, identity.KeyringInstall, key)}, "signed_op"},
	} {
		_, err := c.ChangeGossipKey(ctx, connect.NewRequest(tc.req))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%+v: want InvalidArgument naming %s, got %v", tc.req, tc.field, err)
		}
	}
	if e.keyring.ops != before {
		t.Fatal("a refused request reached the backend")
	}
	ms, err := c.ListMembers(ctx, connect.NewRequest(&adminv1.ListMembersRequest{}))
	if err != nil || len(ms.Msg.Members) != 1 || ms.Msg.Members[0].GossipState != "alive" {
		t.Fatalf("members %v %v", ms, err)
	}
}
