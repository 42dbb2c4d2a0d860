package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/gossip"
	"github.com/vigil-mesh/vigil/identity"
)

// run executes the vigil command line in-process and returns its output and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	if err := root.ExecuteContext(context.Background()); err != nil {
		return out.String() + err.Error(), exitCode(err)
	}
	return out.String(), exitOK
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "op.key")
	out, code := run(t, "keygen", "--out", path, "--role", "operator")
	if code != exitOK {
		t.Fatalf("keygen: code %d: %s", code, out)
	}
	k, err := identity.LoadKeyFile(path, identity.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != k.ID().String() {
		t.Errorf("printed ID %q, key file holds %s", got, k.ID())
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := identity.LoadKeyFile(path, identity.RoleAgent); err == nil {
		t.Error("an operator key loaded as an agent key")
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no out", []string{"keygen"}, exitUsage, "--out is required"},
		{"bad role", []string{"keygen", "--out", filepath.Join(dir, "x.key"), "--role", "admin"}, exitUsage, `--role "admin"`},
		{"unknown flag", []string{"keygen", "--bogus"}, exitUsage, "unknown flag"},
		{"never overwrites", []string{"keygen", "--out", path}, exitError, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(path)
			out, code := run(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("code %d, output %q; want code %d containing %q", code, out, tc.code, tc.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the existing key file changed")
			}
		})
	}
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node1")
	out, code := run(t, "init", "--dir", dir, "--operators", "3", "--threshold", "2", "--trust-domain", "fleet.example")
	if code != exitOK {
		t.Fatalf("init: code %d: %s", code, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "genesis.bin"))
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := identity.DecodeCommand(raw)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cmd.Verify()
	if err != nil {
		t.Fatal(err)
	}
	reg := identity.NewRegistry()
	if err := reg.Apply(v, time.Now()); err != nil {
		t.Fatalf("genesis from init not accepted: %v", err)
	}
	if reg.Threshold() != 2 || len(reg.Operators()) != 3 || reg.TrustDomain() != "fleet.example" {
		t.Errorf("registry: threshold %d, %d operators, trust domain %q", reg.Threshold(), len(reg.Operators()), reg.TrustDomain())
	}
	if reg.ClusterID().String() == "" || !strings.Contains(out, reg.ClusterID().String()) {
		t.Errorf("output does not name the cluster id %s:\n%s", reg.ClusterID(), out)
	}
	node, err := identity.LoadKeyFile(filepath.Join(dir, "keys", "node.key"), identity.RoleNode)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.Node(node.ID()); !ok {
		t.Error("the first node is not admitted by the genesis")
	}
	for i := 1; i <= 3; i++ {
		if _, err := identity.LoadKeyFile(filepath.Join(dir, "keys", "operator-"+string(rune('0'+i))+".key"), identity.RoleOperator); err != nil {
			t.Error(err)
		}
	}
	// The gossip keyring every node of the cluster is to share: one AES-256 key, mode 0600.
	ring := filepath.Join(dir, "keys", "gossip.keyring")
	if keys, err := gossip.LoadKeyring(ring); err != nil || len(keys) != 1 || len(keys[0]) != 32 {
		t.Errorf("keys/gossip.keyring: %d keys, err %v", len(keys), err)
	}
	if fi, err := os.Stat(ring); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("keys/gossip.keyring: mode %v, want 0600", fi.Mode().Perm())
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"not empty", []string{"init", "--dir", dir}, exitError, "is not empty"},
		{"no dir", []string{"init"}, exitUsage, "--dir is required"},
		{"threshold above operators", []string{"init", "--dir", t.TempDir(), "--operators", "2", "--threshold", "3"}, exitUsage, "--threshold 3"},
		{"zero threshold", []string{"init", "--dir", t.TempDir(), "--threshold", "0"}, exitUsage, "--threshold 0"},
		{"bad node name", []string{"init", "--dir", t.TempDir(), "--node-name", "Bad Name"}, exitUsage, "--node-name"},
		{"bad trust domain", []string{"init", "--dir", t.TempDir(), "--trust-domain", "no/slash"}, exitUsage, "--trust-domain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := run(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("code %d, output %q; want code %d containing %q", code, out, tc.code, tc.want)
			}
		})
	}
}

// TestDevRestart runs the local mesh twice on the same folder: the second run must elect a leader
// from the persisted state (no node's registry is replayed yet when the election starts) and still
// hold every demo agent.
func TestDevRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 real nodes twice")
	}
	dir := t.TempDir()
	n, _ := rand.Int(rand.Reader, big.NewInt(2000))
	o := devOptions{dir: dir, nodes: 3, agents: 2, basePort: 40000 + 10*int(n.Int64()), runFor: 500 * time.Millisecond, logLevel: "error"}
	for round := 1; round <= 2; round++ {
		var out bytes.Buffer
		err := runDev(context.Background(), &out, o)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d: %v\n%s", round, err, out.String())
		}
		// Both demo agents are attached (to node-1 and node-2) through the daemons' gaters.
		for _, want := range []string{"demo-agent-1", "demo-agent-2", "node-3", "CONNECTED TO", "active  node-1", "active  node-2"} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("round %d: output lacks %q:\n%s", round, want, out.String())
			}
		}
	}
	env, err := os.ReadFile(filepath.Join(dir, "vigil.env"))
	if err != nil || !strings.Contains(string(env), "VIGIL_OPERATOR_KEY=") || !strings.Contains(string(env), "VIGIL_ADMIN_SOCKET=") {
		t.Errorf("vigil.env: %v\n%s", err, env)
	}
}
