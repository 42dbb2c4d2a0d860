package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
)

// runAdmin runs the command line with the admin commands wired in (root.go is the lead's).
func runAdmin(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd()
	have := map[string]bool{}
	for _, c := range root.Commands() {
		have[c.Name()] = true
	}
	for name, mk := range map[string]func() *cobra.Command{"status": newStatusCmd, "members": newMembersCmd, "agent": newAgentCmd} {
		if !have[name] {
			root.AddCommand(mk())
		}
	}
	var out bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	if err := root.ExecuteContext(context.Background()); err != nil {
		return out.String() + err.Error(), exitCode(err)
	}
	return out.String(), exitOK
}

// adminNode starts a real one-node cluster with the admin API on TLS and a Unix socket, and
// writes the operator key to a file. It returns the TLS address, node ID, key path and socket.
func adminNode(t *testing.T) (addr, nodeID, keyPath, sock string) {
	t.Helper()
	addr, nodeID, keys, sock := adminCluster(t, []string{"alice"}, 1)
	return addr, nodeID, keys[0], sock
}

// adminCluster is adminNode with the named operators (key files returned in that order) and
// threshold M; the first operator signs the genesis alone.
func adminCluster(t *testing.T, names []string, m int) (addr, nodeID string, keyPaths []string, sock string) {
	t.Helper()
	dir := t.TempDir()
	var ops []identity.OperatorEntry
	var op identity.PrivateKey
	for i, name := range names {
		k, err := identity.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".key")
		if err := identity.WriteKeyFile(p, identity.RoleOperator, k); err != nil {
			t.Fatal(err)
		}
		keyPaths = append(keyPaths, p)
		ops = append(ops, identity.OperatorEntry{Name: name, Key: k.Public()})
		if i == 0 {
			op = k
		}
	}
	nodeKey, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(nodeKey.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	cid, err := identity.NewClusterID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	g, err := identity.NewCommand(cid, &identity.Genesis{ClusterID: cid, TrustDomain: "cli.test", Threshold: m,
		Operators: ops,
		Nodes:     []identity.NodeEntry{{Name: "n1", Key: nodeKey.Public(), Voter: true, Site: "s1"}}}, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	g.Sign(op)
	if m > 1 { // genesis needs M of its operators too
		for _, kp := range keyPaths[1:m] {
			k, err := identity.LoadKeyFile(kp, identity.RoleOperator)
			if err != nil {
				t.Fatal(err)
			}
			g.Sign(k)
		}
	}
	cfg := consensus.DefaultConfig()
	cfg.DataDir, cfg.Key, cfg.Host, cfg.Genesis, cfg.Bootstrap = filepath.Join(dir, "data"), nodeKey, h, g, true
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	n, err := consensus.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	for deadline := time.Now().Add(15 * time.Second); ; {
		ok := false
		n.Read(func(r *identity.Registry) { ok = r.ClusterID() == cid })
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("genesis not applied")
		}
		time.Sleep(10 * time.Millisecond)
	}
	acfg := admin.DefaultConfig()
	acfg.Key, acfg.Logger = nodeKey, cfg.Logger
	acfg.Activity = testActivity.Query // activitycmd_test.go
	testAlertsConfig(t, &acfg)         // alertscmd_test.go
	srv := admin.NewServer(n, acfg)
	t.Cleanup(func() { _ = srv.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeTLS(ln); err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(dir, "admin.sock")
	if err := srv.ServeUnix(sock); err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String(), nodeKey.ID().String(), keyPaths, sock
}

func TestAdminCommands(t *testing.T) {
	addr, nodeID, keyPath, sock := adminNode(t)
	agentKey, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tlsFlags := []string{"--node", addr, "--node-id", nodeID, "--key", keyPath}
	sockFlags := []string{"--socket", sock, "--key", keyPath}

	out, code := runAdmin(t, append([]string{"status"}, tlsFlags...)...)
	if code != exitOK || !strings.Contains(out, "n1") || !strings.Contains(out, "Leader") {
		t.Fatalf("status: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"members", "-o", "json"}, sockFlags...)...)
	var members struct{ Members []struct{ Name, Site string } }
	if code != exitOK || json.Unmarshal([]byte(out), &members) != nil || len(members.Members) != 1 || members.Members[0].Site != "s1" {
		t.Fatalf("members: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"agent", "register", "planner-1", "--agent-id", agentKey.ID().String(),
		"--label", "site=depot", "--capability", "send", "--ttl", "1h"}, tlsFlags...)...)
	if code != exitOK || !strings.Contains(out, "applied at index") {
		t.Fatalf("register: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"agent", "list", "--selector", "site=depot"}, sockFlags...)...)
	if code != exitOK || !strings.Contains(out, "planner-1") || !strings.Contains(out, "active") {
		t.Fatalf("list: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"agent", "show", agentKey.ID().String(), "-o", "json", "--consistent"}, tlsFlags...)...)
	var shown struct{ Name, Status, SpiffeID string }
	if code != exitOK || json.Unmarshal([]byte(out), &shown) != nil || shown.Name != "planner-1" || shown.Status != "active" {
		t.Fatalf("show: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"agent", "revoke", "planner-1", "--reason", "test"}, sockFlags...)...)
	if code != exitOK {
		t.Fatalf("revoke: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"agent", "show", "planner-1"}, sockFlags...)...)
	if code != exitOK || !strings.Contains(out, "revoked") {
		t.Fatalf("show after revoke: %d %s", code, out)
	}
	// The API's refusal is exit code 1 with the reason and its code.
	out, code = runAdmin(t, append([]string{"agent", "revoke", "nobody"}, sockFlags...)...)
	if code != exitError || !strings.Contains(out, "code not_found") {
		t.Fatalf("revoke unknown: %d %s", code, out)
	}

	usage := []struct {
		name string
		args []string
	}{
		{"no node", []string{"status"}},
		{"bad output", append([]string{"status", "-o", "yaml"}, sockFlags...)},
		{"no node id", []string{"status", "--node", addr, "--key", keyPath}},
		{"bad node id", []string{"status", "--node", addr, "--node-id", "nope", "--key", keyPath}},
		{"register without id", append([]string{"agent", "register", "x"}, sockFlags...)},
		{"register bad name", append([]string{"agent", "register", "Bad Name", "--agent-id", agentKey.ID().String()}, sockFlags...)},
		{"register bad label", append([]string{"agent", "register", "x", "--agent-id", agentKey.ID().String(), "--label", "nolabel"}, sockFlags...)},
		{"revoke without key", []string{"agent", "revoke", "x", "--socket", sock}},
		{"show without arg", append([]string{"agent", "show"}, sockFlags...)},
		{"agent alone", []string{"agent"}},
	}
	for _, tc := range usage {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envAdminAddr, "")
			t.Setenv(envAdminSocket, "")
			if out, code := runAdmin(t, tc.args...); code != exitUsage {
				t.Fatalf("want exit %d, got %d: %s", exitUsage, code, out)
			}
		})
	}
}
