package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/gossip"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node"
	"github.com/vigil-mesh/vigil/node/config"
)

// gossipNode starts a real one-node daemon with gossip on, encrypted with a fresh keyring file
// (or in plaintext when keyring is false). It returns the admin socket, the operator key file,
// the keyring file and the first key.
func gossipNode(t *testing.T, keyring bool) (sock, opKeyPath, keyringPath string, key []byte) {
	t.Helper()
	dir := t.TempDir()
	op, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	opKeyPath = filepath.Join(dir, "alice.key")
	if err := identity.WriteKeyFile(opKeyPath, identity.RoleOperator, op); err != nil {
		t.Fatal(err)
	}
	nk, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteKeyFile(filepath.Join(dir, "keys", "node.key"), identity.RoleNode, nk); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)
	cid, err := identity.NewClusterID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	g, err := identity.NewCommand(cid, &identity.Genesis{ClusterID: cid, TrustDomain: "cli.test", Threshold: 1,
		Operators: []identity.OperatorEntry{{Name: "alice", Key: op.Public()}},
		Nodes:     []identity.NodeEntry{{Name: "n1", Key: nk.Public(), Voter: true, Site: "s1", Addrs: []string{addr}}}}, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	g.Sign(op)
	if err := os.WriteFile(filepath.Join(dir, "genesis.bin"), g.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	keyringPath = filepath.Join(dir, "gossip.keyring")
	kr := `""`
	if keyring {
		if key, err = gossip.GenerateKeyringKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
		if err := gossip.WriteKeyring(keyringPath, [][]byte{key}); err != nil {
			t.Fatal(err)
		}
		kr = keyringPath
	}
	yaml := "node:\n  name: n1\n  data_dir: " + dir + "\nlisten:\n  libp2p: [" + addr + "]\n  admin: 127.0.0.1:0\n  http: 127.0.0.1:0\n" +
		"raft:\n  heartbeat_timeout: 300ms\n  election_timeout: 300ms\nlog:\n  level: warn\n" +
		"gossip:\n  enabled: true\n  bind: 127.0.0.1:0\n  profile: lan\n  keyring: " + kr + "\n"
	file := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	sock = cfg.Listen.AdminSocket
	deadline := time.Now().Add(20 * time.Second)
	for {
		if out, code := runAdmin(t, "members", "--socket", sock); code == exitOK && strings.Contains(out, "alive") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return sock, opKeyPath, keyringPath, key
}

// TestGossipKeysCommands: list, install (--generate and --gossip-key), use by key, remove by
// fingerprint, against a real daemon; the keyring file follows; bad input exits 2 and the
// primary key cannot be removed (exit 1).
func TestGossipKeysCommands(t *testing.T) {
	sock, keyPath, keyringPath, oldKey := gossipNode(t, true)
	flags := []string{"--socket", sock, "--key", keyPath}
	oldFP := gossip.KeyFingerprint(oldKey)

	out, code := runAdmin(t, append([]string{"members"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "GOSSIP") || !strings.Contains(out, "alive") {
		t.Fatalf("members: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"members", "-o", "json"}, flags...)...)
	var ms struct {
		Members []struct{ Name, GossipState string }
	}
	if code != exitOK || json.Unmarshal([]byte(out), &ms) != nil || len(ms.Members) != 1 || ms.Members[0].GossipState != "alive" {
		t.Fatalf("members -o json: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"gossip", "keys", "list"}, flags...)...)
	if code != exitOK || !strings.Contains(out, oldFP) || !strings.Contains(out, "1/1") {
		t.Fatalf("list: %d %s", code, out)
	}
	newKey, _ := gossip.GenerateKeyringKey(rand.Reader)
	newFP := gossip.KeyFingerprint(newKey)
	out, code = runAdmin(t, append([]string{"gossip", "keys", "install", "--gossip-key", base64.StdEncoding.EncodeToString(newKey)}, flags...)...)
	if code != exitOK || !strings.Contains(out, "1 of 1 nodes applied it") || !strings.Contains(out, oldFP+","+newFP) {
		t.Fatalf("install: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"gossip", "keys", "install", "--generate", "-o", "json"}, flags...)...)
	var inst struct {
		Nodes []struct {
			Ok           bool
			Fingerprints []string
		}
	}
	genLine, doc, _ := strings.Cut(out, "\n") // runAdmin merges stderr (the key) and stdout
	if code != exitOK || !strings.HasPrefix(genLine, "generated key") || json.Unmarshal([]byte(doc), &inst) != nil || len(inst.Nodes) != 1 || len(inst.Nodes[0].Fingerprints) != 3 {
		t.Fatalf("install --generate: %d %s", code, out)
	}
	genFP := inst.Nodes[0].Fingerprints[2]
	if k, err := parseGossipKey(strings.TrimPrefix(genLine, "generated key (keep it secret): ")); err != nil || gossip.KeyFingerprint(k) != genFP {
		t.Fatalf("the printed key is not the installed one: %q %v", genLine, err)
	}
	out, code = runAdmin(t, append([]string{"gossip", "keys", "use", base64.StdEncoding.EncodeToString(newKey)}, flags...)...)
	if code != exitOK || !strings.Contains(out, newFP+",") {
		t.Fatalf("use: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"gossip", "keys", "remove", newFP}, flags...)...)
	if code != exitError || !strings.Contains(out, "primary") {
		t.Fatalf("remove primary: %d %s", code, out)
	}
	for _, fp := range []string{oldFP, genFP} {
		if out, code = runAdmin(t, append([]string{"gossip", "keys", "remove", fp}, flags...)...); code != exitOK {
			t.Fatalf("remove %s: %d %s", fp, code, out)
		}
	}
	keys, err := gossip.LoadKeyring(keyringPath)
	if err != nil || len(keys) != 1 || gossip.KeyFingerprint(keys[0]) != newFP {
		t.Fatalf("keyring file: %d keys, %v", len(keys), err)
	}
	out, code = runAdmin(t, append([]string{"gossip", "keys", "list", "-o", "json"}, flags...)...)
	var list struct {
		Keys []struct {
			Fingerprint string
			Nodes       int
			PrimaryOn   int `json:"primaryOn"`
		}
	}
	if code != exitOK || json.Unmarshal([]byte(out), &list) != nil || len(list.Keys) != 1 || list.Keys[0].Fingerprint != newFP || list.Keys[0].PrimaryOn != 1 {
		t.Fatalf("list json: %d %s", code, out)
	}
	for _, args := range [][]string{
		{"gossip", "keys", "install"},
		{"gossip", "keys", "install", "--generate", "--gossip-key", "AAAA"},
		{"gossip", "keys", "install", "--gossip-key", base64.StdEncoding.EncodeToString(make([]byte, 20))},
		{"gossip", "keys", "use", "not-a-key"},
		{"gossip", "keys", "remove"},
	} {
		if out, code := runAdmin(t, append(args, flags...)...); code != exitUsage {
			t.Errorf("%v: want exit %d, got %d %s", args, exitUsage, code, out)
		}
	}
}

// TestGossipKeysSigned: a keyring change is signed with the --key operator key on this side,
// also over the Unix socket: without --key it is a usage error, and signed by a key that is not
// an operator of the cluster the node refuses it (exit 1, saying why) and nothing changes.
func TestGossipKeysSigned(t *testing.T) {
	sock, _, keyringPath, key := gossipNode(t, true)
	fp := gossip.KeyFingerprint(key)
	t.Setenv("VIGIL_OPERATOR_KEY", "")
	newKey := base64.StdEncoding.EncodeToString(make([]byte, 32))
	if out, code := runAdmin(t, "gossip", "keys", "install", "--gossip-key", newKey, "--socket", sock); code != exitUsage || !strings.Contains(out, "--key") {
		t.Fatalf("install without --key: %d %s", code, out)
	}
	stranger, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	strangerPath := filepath.Join(t.TempDir(), "mallory.key")
	if err := identity.WriteKeyFile(strangerPath, identity.RoleOperator, stranger); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"gossip", "keys", "install", "--gossip-key", newKey},
		{"gossip", "keys", "use", fp},
		{"gossip", "keys", "remove", fp},
	} {
		out, code := runAdmin(t, append(args, "--socket", sock, "--key", strangerPath)...)
		if code != exitError || !strings.Contains(out, "not an operator") || !strings.Contains(out, "code unauthorized") {
			t.Errorf("%v signed by a non-operator: %d %s", args, code, out)
		}
	}
	keys, err := gossip.LoadKeyring(keyringPath)
	if err != nil || len(keys) != 1 || gossip.KeyFingerprint(keys[0]) != fp {
		t.Fatalf("keyring file changed: %d keys, %v", len(keys), err)
	}
}

// TestGossipKeysPlaintext: a node without a keyring says so.
func TestGossipKeysPlaintext(t *testing.T) {
	sock, keyPath, _, _ := gossipNode(t, false)
	out, code := runAdmin(t, "gossip", "keys", "list", "--socket", sock, "--key", keyPath)
	if code != exitError || !strings.Contains(out, "without a keyring") {
		t.Fatalf("list in plaintext: %d %s", code, out)
	}
}
