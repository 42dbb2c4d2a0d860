package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

func TestKeyringFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "gossip.keyring")
	k1, _ := GenerateKeyringKey(seeded(1))
	k2, _ := GenerateKeyringKey(seeded(2))
	if err := WriteKeyring(path, [][]byte{k1, k2}); err != nil {
		t.Fatal(err)
	}
	got, err := LoadKeyring(path)
	if err != nil || len(got) != 2 || string(got[0]) != string(k1) {
		t.Fatalf("round trip: %v %d", err, len(got))
	}
	for doc, want := range map[string]string{
		"":                   "holds no key",
		"# only a comment\n": "holds no key",
		"not base64!\n":      "k:1: not base64",
		"AAAA\n":             "k:1: key of 3 bytes",
		strings.Repeat("QUFBQUFBQUFBQUFBQUFBQQ==\n", 17): "more than 16 keys",
	} {
		_, err := ParseKeyring("k", []byte(doc))
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", doc, err, want)
		}
	}
}

// TestEncryptedMeshOverUDP: two meshes on real UDP/TCP loopback sockets with one keyring talk;
// a third with another key cannot join.
func TestEncryptedMeshOverUDP(t *testing.T) {
	rnd := seeded(21)
	cl, _ := identity.NewClusterID(rnd)
	admit := &admitSet{}
	key, _ := GenerateKeyringKey(rnd)
	other, _ := GenerateKeyringKey(rnd)
	start := func(ring []byte) *Mesh {
		k, _ := identity.GenerateKey(rnd)
		admit.add(k.ID())
		cfg := DefaultConfig()
		cfg.ClusterID, cfg.Key, cfg.Admission = cl, k, admit
		cfg.Profile, cfg.BindAddr, cfg.BindPort = ProfileLocal, "127.0.0.1", 0
		cfg.Keyring = [][]byte{ring}
		cfg.Logger = slog.New(slog.DiscardHandler)
		m, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b, c := start(key), start(key), start(other)
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join([]string{a.Addr()}); err == nil {
		t.Fatal("a node with another keyring joined")
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.NumMembers() != 2 || b.NumMembers() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("members: %d %d", a.NumMembers(), b.NumMembers())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a.Keyring() == nil || len(a.Keyring().GetKeys()) != 1 {
		t.Fatal("keyring not exposed for rotation")
	}
}

// TestKeyringRotation: two nodes rotate from key A to key B without losing each other (add B,
// use B, remove A); afterwards a node holding only B joins and a node holding only A cannot.
func TestKeyringRotation(t *testing.T) {
	rnd := seeded(22)
	cl, _ := identity.NewClusterID(rnd)
	admit := &admitSet{}
	ka, _ := GenerateKeyringKey(rnd)
	kb, _ := GenerateKeyringKey(rnd)
	start := func(ring []byte) *Mesh {
		k, _ := identity.GenerateKey(rnd)
		admit.add(k.ID())
		cfg := DefaultConfig()
		cfg.ClusterID, cfg.Key, cfg.Admission = cl, k, admit
		cfg.Profile, cfg.BindAddr, cfg.BindPort = ProfileLocal, "127.0.0.1", 0
		cfg.Keyring = [][]byte{ring}
		cfg.Logger = slog.New(slog.DiscardHandler)
		m, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b := start(ka), start(ka)
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Mesh{a, b} {
		if err := m.Keyring().AddKey(kb); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []*Mesh{a, b} {
		if err := m.Keyring().UseKey(kb); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []*Mesh{a, b} {
		if err := m.Keyring().RemoveKey(ka); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second) // a few probe rounds on the new key only
	if a.NumMembers() != 2 || b.NumMembers() != 2 {
		t.Fatalf("lost each other during rotation: %d %d", a.NumMembers(), b.NumMembers())
	}
	if _, err := start(kb).Join([]string{a.Addr()}); err != nil {
		t.Fatalf("node with the new key: %v", err)
	}
	if _, err := start(ka).Join([]string{a.Addr()}); err == nil {
		t.Fatal("node with the retired key joined")
	}
}

// TestMetaFitsAndVerifies: metadata keeps as many addresses as fit memberlist's 512 bytes, and
// verifies only for its own key and cluster.
func TestMetaFitsAndVerifies(t *testing.T) {
	k, _ := identity.GenerateKey(seeded(30))
	other, _ := identity.GenerateKey(seeded(31))
	var addrs []string
	for i := range 8 {
		addrs = append(addrs, fmt.Sprintf("/dns4/node-%d.a-rather-long-site-name.example.internal/udp/7400/quic-v1", i))
	}
	m, err := signMeta(identity.ClusterID{1}, k, "site-a", "voter", addrs)
	if err != nil {
		t.Fatal(err)
	}
	raw := m.Encode()
	if len(raw) > MaxMetaSize || len(m.Addrs) == 0 || len(m.Addrs) == 8 {
		t.Fatalf("%d bytes with %d of 8 addresses", len(raw), len(m.Addrs))
	}
	if _, err := verifyMeta(identity.ClusterID{1}, k.ID(), raw); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyMeta(identity.ClusterID{2}, k.ID(), raw); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other cluster: %v", err)
	}
	if _, err := verifyMeta(identity.ClusterID{1}, other.ID(), raw); !errors.Is(err, ErrMismatch) {
		t.Fatalf("other node's name: %v", err)
	}
	if _, err := DecodeMeta(make([]byte, MaxMetaSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
}
