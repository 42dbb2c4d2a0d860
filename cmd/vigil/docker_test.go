package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
)

// dockerTestBudget bounds the whole container test (build, cluster, checks).
const dockerTestBudget = 3 * time.Minute

// TestDockerCluster runs the deploy/ tooling end to end against real containers: it builds the
// static binary and the FROM-scratch image (deploy/build-image.sh), prepares three data
// directories (deploy/setup.sh), starts node-1 on two Docker networks (site-a and site-b), admits
// node-2 and node-3 through node-1's admin socket (deploy/admit.sh via docker exec) and starts
// them. An agent on the host attaches to every node through its published 127.0.0.1 port; after
// `vigil agent revoke` every node closes the agent's connection, counts one revoked enforcement
// in /metrics and refuses it afterwards. node-3 is then SIGKILLed, more agents are registered
// while it is down, and after `docker start` node-3's own `vigil agent list` holds every
// acknowledged registration and the revocation. Every container, network and image tag the test
// creates carries a random suffix and is removed in Cleanup.
func TestDockerCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("docker: skipped with -short (builds an image and runs a 3-container cluster)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker: no docker command on PATH; skipping the container end-to-end test")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("docker: no Docker daemon answers (docker info: %v: %s); skipping the container end-to-end test",
			err, strings.TrimSpace(string(out)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockerTestBudget)
	defer cancel()
	start := time.Now()
	d := &dockerCluster{t: t, ctx: ctx, suffix: randomSuffix(t)}
	d.build()
	t.Logf("binary and image built in %v", time.Since(start).Round(time.Millisecond))
	d.createNetworks()
	d.setup()
	d.createNodes()

	d.docker("start", d.name(1))
	d.runAdmit()
	d.docker("start", d.name(2), d.name(3))
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))

	// An agent on the host, registered through node-1, attaches to every node.
	agentKey := mustKey(t)
	d.operator("agent", "register", "worker", "--agent-id", agentKey.ID().String(), "--ttl", "1h")
	ah := newHostAgent(t, agentKey)
	for i := 1; i <= 3; i++ {
		d.attachEventually(ah, i)
	}
	d.operator("agent", "register", "keep-1", "--agent-id", mustKey(t).ID().String(), "--ttl", "1h")

	// Revoke: every node closes the live connection and counts exactly one revoked enforcement.
	revokedAt := time.Now()
	d.operator("agent", "revoke", "worker", "--reason", "docker e2e")
	for i := 1; i <= 3; i++ {
		d.waitFor(fmt.Sprintf("node-%d to close the revoked agent's connection", i), func() bool {
			return len(ah.Network().ConnsToPeer(d.ids[i].Peer())) == 0
		})
		d.waitFor(fmt.Sprintf("node-%d to report the enforcement in /metrics", i), func() bool {
			return strings.Contains(d.metrics(i), `vigil_enforcements_total{reason="revoked"} 1`+"\n")
		})
	}
	t.Logf("revocation enforced on all 3 nodes within %v", time.Since(revokedAt).Round(time.Millisecond))
	for i := 1; i <= 3; i++ {
		d.assertRefused(ah, i)
	}

	// Kill node-3 without warning; acknowledge more writes while it is down; restart it.
	d.docker("kill", d.name(3))
	for _, name := range []string{"during-1", "during-2"} {
		d.operator("agent", "register", name, "--agent-id", mustKey(t).ID().String(), "--ttl", "1h")
	}
	restart := time.Now()
	d.docker("start", d.name(3))
	want := map[string]string{"worker": "revoked", "keep-1": "active", "during-1": "active", "during-2": "active"}
	d.waitFor("the restarted node-3 to list every acknowledged agent", func() bool {
		return agentsEqual(d.agentList(3), want)
	})
	t.Logf("node-3 restarted and caught up in %v", time.Since(restart).Round(time.Millisecond))
	if got := d.agentList(1, "--consistent"); !agentsEqual(got, want) {
		t.Errorf("node-1 --consistent agent list = %v, want %v", got, want)
	}
	d.assertRefused(newHostAgent(t, agentKey), 3) // the revocation survived the crash
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// dockerCluster is the state of one TestDockerCluster run. Node numbers are 1..3.
type dockerCluster struct {
	t      *testing.T
	ctx    context.Context
	suffix string
	bin    string // static vigil binary on the host
	image  string
	dir    string // setup.sh's DIR
	nets   [2]string
	ips    map[string]string // NODE1_IP_A, NODE1_IP_B, NODE2_IP, NODE3_IP
	ids    [4]identity.ID
}

func (d *dockerCluster) name(i int) string { return fmt.Sprintf("vigil-test-%s-node-%d", d.suffix, i) }

// docker runs a docker command and fails the test on error.
func (d *dockerCluster) docker(args ...string) string {
	d.t.Helper()
	out, err := d.dockerErr(args...)
	if err != nil {
		d.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (d *dockerCluster) dockerErr(args ...string) (string, error) {
	cmd := exec.CommandContext(d.ctx, "docker", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (d *dockerCluster) run(env []string, name string, args ...string) string {
	d.t.Helper()
	cmd := exec.CommandContext(d.ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// build compiles the static binary and builds the image with deploy/build-image.sh.
func (d *dockerCluster) build() {
	d.bin = filepath.Join(d.t.TempDir(), "vigil")
	goCmd := "go"
	if p, err := exec.LookPath("go"); err == nil {
		goCmd = p
	}
	d.run([]string{"CGO_ENABLED=0", "GOOS=linux"}, goCmd, "build", "-trimpath", "-o", d.bin, ".")
	d.image = "vigil-test:" + d.suffix
	d.t.Cleanup(func() { _, _ = exec.Command("docker", "rmi", "-f", d.image).CombinedOutput() })
	d.run([]string{"VIGIL_BIN=" + d.bin}, "../../deploy/build-image.sh", d.image)
}

// createNetworks makes the two site networks on random private /24 subnets (retrying on an
// overlap with a network that already exists) and picks the nodes' fixed addresses in them.
func (d *dockerCluster) createNetworks() {
	var prefixes [2]string
	for s, site := range []string{"site-a", "site-b"} {
		d.nets[s] = fmt.Sprintf("vigil-test-%s-%s", d.suffix, site)
		for attempt := 0; ; attempt++ {
			prefixes[s] = fmt.Sprintf("10.%d.%d", 200+randInt(d.t, 50), randInt(d.t, 256))
			out, err := d.dockerErr("network", "create", "--driver", "bridge", "--subnet", prefixes[s]+".0/24", d.nets[s])
			if err == nil {
				break
			}
			if attempt == 10 {
				d.t.Fatalf("docker network create %s: %v\n%s", d.nets[s], err, out)
			}
		}
		net := d.nets[s]
		d.t.Cleanup(func() { _, _ = exec.Command("docker", "network", "rm", net).CombinedOutput() })
	}
	d.ips = map[string]string{
		"NODE1_IP_A": prefixes[0] + ".11", "NODE1_IP_B": prefixes[1] + ".11",
		"NODE2_IP": prefixes[0] + ".12", "NODE3_IP": prefixes[1] + ".13",
	}
}

// setup runs deploy/setup.sh with the random addresses and reads the node IDs it wrote.
func (d *dockerCluster) setup() {
	d.dir = filepath.Join(d.t.TempDir(), "cluster")
	env := []string{"VIGIL=" + d.bin, "LOG_LEVEL=warn"}
	for k, v := range d.ips {
		env = append(env, k+"="+v)
	}
	d.run(env, "../../deploy/setup.sh", d.dir)
	kv := readEnvFile(d.t, filepath.Join(d.dir, "cluster.env"))
	for i := 1; i <= 3; i++ {
		id, err := identity.ParseID(kv[fmt.Sprintf("NODE%d_ID", i)])
		if err != nil {
			d.t.Fatalf("cluster.env: NODE%d_ID: %v", i, err)
		}
		d.ids[i] = id
	}
}

// createNodes creates the three containers (not started): node-1 on both networks, node-2 on
// site-a, node-3 on site-b. Each publishes libp2p and /metrics on an ephemeral 127.0.0.1 port and
// runs as the invoking user, so the bind-mounted data directories stay removable.
func (d *dockerCluster) createNodes() {
	user := fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	nets := [4]string{1: d.nets[0], 2: d.nets[0], 3: d.nets[1]}
	ips := [4]string{1: d.ips["NODE1_IP_A"], 2: d.ips["NODE2_IP"], 3: d.ips["NODE3_IP"]}
	for i := 1; i <= 3; i++ {
		name := d.name(i)
		d.t.Cleanup(func() {
			if d.t.Failed() {
				out, _ := exec.Command("docker", "logs", "--tail", "40", name).CombinedOutput()
				d.t.Logf("docker logs %s:\n%s", name, out)
			}
			_, _ = exec.Command("docker", "rm", "-f", "-v", name).CombinedOutput()
		})
		d.docker("create", "--name", name, "--user", user,
			"--network", nets[i], "--ip", ips[i],
			"-p", "127.0.0.1::7400/tcp", "-p", "127.0.0.1::7402/tcp",
			"-v", filepath.Join(d.dir, fmt.Sprintf("node-%d", i))+":/data",
			d.image, "node", "--config", "/data/node.yaml")
	}
	d.docker("network", "connect", "--ip", d.ips["NODE1_IP_B"], d.nets[1], d.name(1))
}

// runAdmit admits node-2 and node-3 with deploy/admit.sh, through docker exec into node-1.
func (d *dockerCluster) runAdmit() {
	d.run([]string{"EXEC=docker exec " + d.name(1)}, "../../deploy/admit.sh", d.dir)
}

// operator runs a vigil admin command inside node-1 over its admin socket, signed with the
// operator key vigil init left in node-1's data directory.
func (d *dockerCluster) operator(args ...string) string {
	d.t.Helper()
	full := append([]string{"exec", d.name(1), "/vigil"}, args...)
	return d.docker(append(full, "--socket", "/data/admin.sock", "--key", "/data/keys/operator-1.key")...)
}

// agentList is `vigil agent list -o json` run inside node i: name → status.
func (d *dockerCluster) agentList(i int, extra ...string) map[string]string {
	d.t.Helper()
	args := append([]string{"exec", d.name(i), "/vigil", "agent", "list", "--socket", "/data/admin.sock", "-o", "json"}, extra...)
	out, err := d.dockerErr(args...)
	if err != nil {
		return nil // not answering yet (restarting)
	}
	var resp struct {
		Agents []struct{ Name, Status string } `json:"agents"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		d.t.Fatalf("node-%d agent list -o json: %v\n%s", i, err, out)
	}
	m := map[string]string{}
	for _, a := range resp.Agents {
		m[a.Name] = a.Status
	}
	return m
}

// hostPort is the 127.0.0.1 port docker published for the container port of node i. It is
// looked up each time: a restarted container may get another one.
func (d *dockerCluster) hostPort(i int, port string) string {
	d.t.Helper()
	out := strings.TrimSpace(d.docker("port", d.name(i), port))
	line, _, _ := strings.Cut(out, "\n")
	_, p, ok := strings.Cut(line, "127.0.0.1:")
	if !ok {
		d.t.Fatalf("docker port %s %s: %q", d.name(i), port, out)
	}
	return p
}

func (d *dockerCluster) addrInfo(i int) peer.AddrInfo {
	d.t.Helper()
	a, err := multiaddr.NewMultiaddr("/ip4/127.0.0.1/tcp/" + d.hostPort(i, "7400/tcp"))
	if err != nil {
		d.t.Fatal(err)
	}
	return peer.AddrInfo{ID: d.ids[i].Peer(), Addrs: []multiaddr.Multiaddr{a}}
}

// metrics is node i's /metrics text, or "" while it does not answer.
func (d *dockerCluster) metrics(i int) string {
	ctx, cancel := context.WithTimeout(d.ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+d.hostPort(i, "7402/tcp")+"/metrics", nil)
	if err != nil {
		d.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return string(b)
}

// attachEventually attaches h to node i, retrying while the registration is still replicating
// or node i is still joining.
func (d *dockerCluster) attachEventually(h host.Host, i int) {
	d.t.Helper()
	var last error
	d.waitFor(fmt.Sprintf("the agent to attach to node-%d", i), func() bool {
		ctx, cancel := context.WithTimeout(d.ctx, 3*time.Second)
		defer cancel()
		reg, err := agentproto.Attach(ctx, h, d.addrInfo(i))
		if err != nil {
			last = err
			h.Network().ClosePeer(d.ids[i].Peer())
			return false
		}
		if reg.Name != "worker" {
			d.t.Fatalf("attached to node-%d as %q, want worker", i, reg.Name)
		}
		return len(h.Network().ConnsToPeer(d.ids[i].Peer())) > 0
	}, func() string { return fmt.Sprint(last) })
}

// assertRefused checks that node i no longer lets the revoked agent attach.
func (d *dockerCluster) assertRefused(h host.Host, i int) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
	defer cancel()
	_, err := agentproto.Attach(ctx, h, d.addrInfo(i))
	if !errors.Is(err, agentproto.ErrUnreachable) && !errors.Is(err, agentproto.ErrRefused) {
		d.t.Fatalf("node-%d: attach of the revoked agent: err = %v, want ErrUnreachable or ErrRefused", i, err)
	}
}

// waitFor polls cond every 100 ms until it holds or the test's budget ends; detail, if given,
// explains the last failure.
func (d *dockerCluster) waitFor(what string, cond func() bool, detail ...func() string) {
	d.t.Helper()
	for !cond() {
		select {
		case <-d.ctx.Done():
			msg := ""
			for _, f := range detail {
				msg += ": " + f()
			}
			d.t.Fatalf("timed out waiting for %s%s", what, msg)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// newHostAgent is an agent's libp2p host on the test machine's loopback that answers the
// nodes' re-verification challenges.
func newHostAgent(t *testing.T, k identity.PrivateKey) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.Identity(k.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	agentproto.ServeReverify(h, k)
	t.Cleanup(func() { h.Close() })
	return h
}

func mustKey(t *testing.T) identity.PrivateKey {
	t.Helper()
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randInt(t *testing.T, n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		t.Fatal(err)
	}
	return v.Int64()
}

// readEnvFile parses KEY=VALUE lines.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}

func agentsEqual(got, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
