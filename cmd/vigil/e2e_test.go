package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
)

// The end-to-end test runs the real binary: built once per test binary run, removed by TestMain.
var (
	e2eBinOnce sync.Once
	e2eBinDir  string
	e2eBin     string
	e2eBinErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if e2eBinDir != "" {
		os.RemoveAll(e2eBinDir)
	}
	os.Exit(code)
}

// vigilBinary builds ./cmd/vigil from the module root (found upwards from the working
// directory) into a temporary folder, once.
func vigilBinary(t *testing.T) string {
	t.Helper()
	e2eBinOnce.Do(func() {
		root, err := os.Getwd()
		if err != nil {
			e2eBinErr = err
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				e2eBinErr = errors.New("no go.mod above the working directory")
				return
			}
			root = parent
		}
		if e2eBinDir, e2eBinErr = os.MkdirTemp("", "vigil-e2e-bin-"); e2eBinErr != nil {
			return
		}
		e2eBin = filepath.Join(e2eBinDir, "vigil")
		// Built like this test binary (with -race under go test -race), so the packages the test
		// build compiled are reused from the build cache and the nodes run under the race
		// detector too.
		args := []string{"build", "-o", e2eBin}
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "-race" && s.Value == "true" {
					args = append(args, "-race")
				}
			}
		}
		cmd := exec.Command("go", append(args, "./cmd/vigil")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			e2eBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if e2eBinErr != nil {
		t.Fatal(e2eBinErr)
	}
	return e2eBin
}

// e2eProc is one `vigil node` process.
type e2eProc struct {
	name, dir, config, logPath string
	libp2p                     string // /ip4/127.0.0.1/tcp/PORT
	http                       string // 127.0.0.1:PORT
	id                         identity.ID
	cmd                        *exec.Cmd
	exited                     chan struct{}
}

func (p *e2eProc) socket() string { return filepath.Join(p.dir, "admin.sock") }

func (p *e2eProc) addrInfo(t *testing.T) peer.AddrInfo {
	ma, err := multiaddr.NewMultiaddr(p.libp2p)
	if err != nil {
		t.Fatal(err)
	}
	return peer.AddrInfo{ID: p.id.Peer(), Addrs: []multiaddr.Multiaddr{ma}}
}

// start runs `vigil node --config` and waits for /readyz. The process is SIGKILLed at cleanup
// whatever the outcome.
func (p *e2eProc) start(t *testing.T, bin string) {
	t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(bin, "node", "--config", p.config)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	cmd, exited := p.cmd, p.exited
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { p.kill(t, cmd, exited) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("%s exited: %v\n%s", p.name, cmd.ProcessState, p.logTail())
		default:
		}
		if code, _ := e2eGet(p.http, "/readyz"); code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 20 s\n%s", p.name, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill SIGKILLs the process (idempotent) and waits for it to exit.
func (p *e2eProc) kill(t *testing.T, cmd *exec.Cmd, exited chan struct{}) {
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, cmd.Process.Pid)
	}
}

func (p *e2eProc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func e2eGet(addr, path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

func e2eFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// vigilRun runs one CLI command and returns its standard output; it fails the test on a non-zero
// exit.
func vigilRun(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	out, err := vigilTry(bin, env, args...)
	if err != nil {
		t.Fatalf("vigil %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func vigilTry(bin string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s%s", err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// agentStatuses runs `vigil agent list` against a node's admin socket and returns name → status.
func agentStatuses(bin string, env []string, sock string) (map[string]string, error) {
	out, err := vigilTry(bin, env, "agent", "list", "--socket", sock)
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 3 {
			continue // header
		}
		got[f[0]] = f[2]
	}
	return got, nil
}

// TestE2EProcesses runs three real `vigil node` processes on loopback: init, admit, join,
// register, attach an agent to every node, revoke it through node-2 and see every node cut it
// off; then SIGKILL node-3, write while it is down, restart it and list everything on it.
func TestE2EProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three node processes")
	}
	began := time.Now()
	bin := vigilBinary(t)
	t.Logf("binary built in %v", time.Since(began).Round(time.Millisecond))
	root := t.TempDir()
	nodes := make([]*e2eProc, 3)
	for i := range nodes {
		name := fmt.Sprintf("node-%d", i+1)
		nodes[i] = &e2eProc{name: name, dir: filepath.Join(root, name),
			libp2p: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", e2eFreePort(t)),
			http:   fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))}
		nodes[i].config = filepath.Join(root, name+".yaml")
		nodes[i].logPath = filepath.Join(root, name+".log")
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("--- %s log tail ---\n%s", n.name, n.logTail())
			}
		}
	})

	// The cluster: node-1 and the operator keys from vigil init, the other node keys from keygen.
	vigilRun(t, bin, nil, "init", "--dir", nodes[0].dir, "--trust-domain", "e2e.vigil", "--advertise", nodes[0].libp2p)
	genesis, err := os.ReadFile(filepath.Join(nodes[0].dir, "genesis.bin"))
	if err != nil {
		t.Fatal(err)
	}
	k1, err := identity.LoadKeyFile(filepath.Join(nodes[0].dir, "keys", "node.key"), identity.RoleNode)
	if err != nil {
		t.Fatal(err)
	}
	nodes[0].id = k1.ID()
	for _, n := range nodes[1:] {
		out := vigilRun(t, bin, nil, "keygen", "--out", filepath.Join(n.dir, "keys", "node.key"), "--role", "node")
		if n.id, err = identity.ParseID(strings.TrimSpace(out)); err != nil {
			t.Fatalf("keygen printed %q: %v", out, err)
		}
		if err := os.WriteFile(filepath.Join(n.dir, "genesis.bin"), genesis, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range nodes {
		yaml := "node:\n  name: " + n.name + "\n  data_dir: " + n.dir + "\n" +
			"listen:\n  libp2p: [" + n.libp2p + "]\n  admin: 127.0.0.1:0\n  admin_socket: admin.sock\n  http: " + n.http + "\n" +
			"raft:\n  heartbeat_timeout: 300ms\n  election_timeout: 300ms\nlog:\n  level: info\n"
		var join []string
		for _, prev := range nodes[:i] {
			join = append(join, prev.libp2p+"/p2p/"+prev.id.String())
		}
		if len(join) > 0 {
			yaml += "join: [" + strings.Join(join, ", ") + "]\n"
		}
		if err := os.WriteFile(n.config, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		vigilRun(t, bin, nil, "config", "lint", n.config)
	}
	opKey := "VIGIL_OPERATOR_KEY=" + filepath.Join(nodes[0].dir, "keys", "operator-1.key")
	via := func(n *e2eProc) []string { return []string{opKey, "VIGIL_ADMIN_SOCKET=" + n.socket()} }

	nodes[0].start(t, bin)
	for _, n := range nodes[1:] {
		// Admitted through node-1 before it starts (as a voter: one at a time, each started
		// before the next admission, or the raft configuration would lose its quorum).
		vigilRun(t, bin, via(nodes[0]), "members", "admit", n.name, "--node-id", n.id.String(), "--addr", n.libp2p)
		n.start(t, bin)
	}

	agentPath := filepath.Join(root, "agent.key")
	vigilRun(t, bin, nil, "keygen", "--out", agentPath, "--role", "agent")
	agentKey, err := identity.LoadKeyFile(agentPath, identity.RoleAgent)
	if err != nil {
		t.Fatal(err)
	}
	keeperKey, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	vigilRun(t, bin, via(nodes[0]), "agent", "register", "worker", "--agent-id", agentKey.ID().String(), "--capability", "tool:search")
	vigilRun(t, bin, via(nodes[1]), "agent", "register", "keeper", "--agent-id", keeperKey.ID().String())

	ah, err := libp2p.New(libp2p.Identity(agentKey.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ah.Close()
	agentproto.ServeReverify(ah, agentKey)
	for _, n := range nodes {
		// A node admits the agent once it has applied the registration: retry until then.
		deadline := time.Now().Add(15 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			reg, err := agentproto.Attach(ctx, ah, n.addrInfo(t))
			cancel()
			if err == nil {
				if reg.Name != "worker" {
					t.Fatalf("attached to %s as %q", n.name, reg.Name)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("attach to %s: %v", n.name, err)
			}
			ah.Network().ClosePeer(n.id.Peer())
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Logf("cluster up, agent attached to every node: %v", time.Since(began).Round(time.Millisecond))
	vigilRun(t, bin, via(nodes[1]), "agent", "revoke", "worker", "--reason", "e2e")
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for len(ah.Network().ConnsToPeer(n.id.Peer())) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not close the revoked agent's connection", n.name)
			}
			time.Sleep(5 * time.Millisecond)
		}
		_, metrics := e2eGet(n.http, "/metrics")
		if want := `vigil_enforcements_total{reason="revoked"} 1`; !strings.Contains(metrics, want) {
			t.Errorf("%s /metrics lacks %s", n.name, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := agentproto.Attach(ctx, ah, nodes[2].addrInfo(t)); err == nil {
		t.Errorf("the revoked agent attached to %s again", nodes[2].name)
	}

	// SIGKILL node-3, write while it is down, restart it on the same data directory.
	n3 := nodes[2]
	lateKey, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n3.kill(t, n3.cmd, n3.exited)
	vigilRun(t, bin, via(nodes[0]), "agent", "register", "late", "--agent-id", lateKey.ID().String())
	t.Logf("revocation enforced everywhere, node-3 killed: %v", time.Since(began).Round(time.Millisecond))
	n3.start(t, bin)
	t.Logf("node-3 restarted: %v", time.Since(began).Round(time.Millisecond))
	want := map[string]string{"worker": "revoked", "keeper": "active", "late": "active"}
	deadline = time.Now().Add(15 * time.Second)
	for {
		got, err := agentStatuses(bin, via(n3), n3.socket())
		if err == nil && mapsEqual(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vigil agent list on the restarted %s: %v %v, want %v", n3.name, got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
