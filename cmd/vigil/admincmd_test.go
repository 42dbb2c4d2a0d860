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
	var out bytes.Buffer
	code := runAdminTo(t, &out, &out, args...)
	return out.String(), code
}

// runAdminSplit is runAdmin with stdout and stderr apart (the error is at the end of stderr).
func runAdminSplit(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runAdminTo(t, &out, &errOut, args...)
	return out.String(), errOut.String(), code
}

func runAdminTo(t *testing.T, stdout, stderr *bytes.Buffer, args ...string) int {
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
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(context.Background()); err != nil {
		stderr.WriteString(err.Error())
		return exitCode(err)
	}
	return exitOK
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

// TestNodeFlagsOverEnvironment: a flag on the command line wins over the environment; --node on
// the command line sets $VIGIL_ADMIN_SOCKET aside (and --socket $VIGIL_ADMIN_ADDR); both on the
// command line is a usage error.
func TestNodeFlagsOverEnvironment(t *testing.T) {
	addr, nodeID, keyPath, sock := adminNode(t)
	dead := filepath.Join(t.TempDir(), "no-such.sock")

	// The environment names a socket nobody listens on; --node reaches the node over TLS.
	t.Setenv(envAdminSocket, dead)
	t.Setenv(envAdminAddr, "")
	t.Setenv(envNodeID, "")
	t.Setenv(envOperatorKey, keyPath)
	out, code := runAdmin(t, "status", "--node", addr, "--node-id", nodeID)
	must(t, exitOK, out, code, "n1")

	// The environment names the live socket; --node names an address nobody listens on: the
	// command must go there (and fail), not to the socket.
	t.Setenv(envAdminSocket, sock)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	out, code = runAdmin(t, "status", "--node", deadAddr, "--node-id", nodeID)
	must(t, exitError, out, code, deadAddr)

	// $VIGIL_NODE_ID pins the node at $VIGIL_ADMIN_ADDR only: another --node needs its --node-id.
	t.Setenv(envAdminAddr, addr)
	t.Setenv(envNodeID, nodeID)
	t.Setenv(envAdminSocket, "")
	out, code = runAdmin(t, "status", "--node", deadAddr)
	must(t, exitUsage, out, code, "--node-id")
	out, code = runAdmin(t, "status", "--node", addr) // the same node: its pinned ID applies
	must(t, exitOK, out, code, "n1")

	// --socket on the command line sets $VIGIL_ADMIN_ADDR aside.
	t.Setenv(envAdminAddr, deadAddr)
	out, code = runAdmin(t, "status", "--socket", sock)
	must(t, exitOK, out, code, "n1")

	// Both on the command line: a usage error naming both.
	out, code = runAdmin(t, "status", "--socket", sock, "--node", addr, "--node-id", nodeID)
	must(t, exitUsage, out, code, "--node and --socket")

	// Neither on the command line: the environment decides, the socket first as before.
	t.Setenv(envAdminAddr, deadAddr)
	t.Setenv(envAdminSocket, sock)
	out, code = runAdmin(t, "status")
	must(t, exitOK, out, code, "n1")
}

// TestOutFlagOnlyOnSignedCommands: --out (sign and write an approval file) exists only on the
// commands that sign something.
func TestOutFlagOnlyOnSignedCommands(t *testing.T) {
	root := newRootCmd()
	signed := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.PersistentFlags().Lookup("out") != nil {
			signed[c.CommandPath()] = true
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, p := range []string{"vigil agent activity", "vigil alerts list", "vigil alerts ack", "vigil alerts resolve",
		"vigil decisions list", "vigil decisions lift", "vigil approve", "vigil submit"} {
		if signed[p] {
			t.Errorf("%s has --out but signs nothing", p)
		}
	}
	for _, p := range []string{"vigil agent register", "vigil agent revoke", "vigil agent quarantine", "vigil agent rotate-key",
		"vigil policy apply", "vigil operators add", "vigil members admit", "vigil response enable", "vigil response quorum"} {
		if !signed[p] {
			t.Errorf("%s signs a command but has no --out", p)
		}
	}
	if out, code := runAdmin(t, "alerts", "list", "--out", "x.json", "--socket", "s"); code != exitUsage || !strings.Contains(out, "unknown flag: --out") {
		t.Fatalf("alerts list --out: %d %s", code, out)
	}
}

// TestAdminErrorText: refusals read once, with the code at the end; agent commands take a name
// or a peer ID; malformed alert IDs and out-of-range limits are usage errors; an unknown agent's
// activity is an error, not an empty table.
func TestAdminErrorText(t *testing.T) {
	_, _, keyPath, sock := adminNode(t)
	on := []string{"--socket", sock, "--key", keyPath}
	run := func(args ...string) (string, int) { return runAdmin(t, append(args, on...)...) }
	id := newID(t)

	out, code := run("agent", "register", "a1", "--agent-id", id)
	must(t, exitOK, out, code, "applied at index", "(audit seq ")
	out, code = run("agent", "register", "a1", "--agent-id", id)
	must(t, exitError, out, code, `agent register: identity: name: agent "a1" already exists (code exists)`)
	if strings.Count(out, "already exists") != 1 || strings.Contains(out, "already_exists") {
		t.Fatalf("register twice: %s", out)
	}

	// A peer ID names the agent holding that key.
	out, code = run("agent", "quarantine", id, "--reason", "test")
	must(t, exitOK, out, code, "applied at index")
	out, code = run("agent", "show", "a1")
	must(t, exitOK, out, code, "quarantined")
	out, code = run("agent", "revoke", newID(t))
	must(t, exitError, out, code, "look up the agent with peer ID", "(code not_found)")
	out, code = run("agent", "revoke", "Not A Name")
	must(t, exitUsage, out, code, "takes the agent's name or its peer ID")

	// Submitting an approval file twice says that it was applied already.
	file := filepath.Join(t.TempDir(), "revoke.json")
	out, code = run("agent", "revoke", "a1", "--out", file)
	must(t, exitOK, out, code)
	out, code = run("submit", file)
	must(t, exitOK, out, code, "applied at index")
	out, code = run("submit", file)
	must(t, exitError, out, code, file+" was already applied", "(code replay)")
	if strings.Count(out, "replayed nonce") != 1 {
		t.Fatalf("submit twice: %s", out)
	}

	// Alert IDs: 16 hex digits, checked before the node is asked.
	out, code = run("alerts", "ack", "1")
	must(t, exitUsage, out, code, "16 lowercase hex digits")
	out, code = run("alerts", "resolve", "xyz")
	must(t, exitUsage, out, code, "16 lowercase hex digits")
	out, code = run("alerts", "ack", "00000000000000ff")
	must(t, exitError, out, code, "(code not_found)")

	// Activity of an agent the registry does not hold; limits beyond the node's cap.
	out, code = run("agent", "activity", "nobody")
	must(t, exitError, out, code, `"nobody"`, "(code not_found)")
	out, code = run("agent", "activity", "a1")
	must(t, exitOK, out, code, "TIME")
	for _, args := range [][]string{
		{"agent", "activity", "a1", "--limit", "20000"},
		{"agent", "activity", "a1", "--limit", "0"},
		{"alerts", "list", "--limit", "10001"},
		{"decisions", "list", "--limit", "10001"},
	} {
		out, code := run(args...)
		must(t, exitUsage, out, code, "--limit")
	}
}
