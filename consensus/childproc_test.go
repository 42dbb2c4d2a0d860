package consensus

// A child-process harness for crash tests: the test binary re-executes itself to run ONE real
// node (Badger with SyncWrites, libp2p on 127.0.0.1, real raft) in its own process, so the parent
// can SIGKILL it at any instant and start it again on the same data dir and port.
//
// Child protocol (stdin → stdout, one line each; ids are the parent's request ids):
//
//	CMD <id> <hex of Command.Encode()>  →  ACK <id> <index>   (only after Propose returned nil)
//	                                     or REJ <id> <code>    (codeOf(err): identity or consensus.*)
//	DUMP <id>                            →  DUMP <id> <registry hash hex> <name,name,…|->   (ConsistentRead)
//	                                     or ERR <id> <code>
//	STATUS <id>                          →  STATUS <id> <raft state> <leader|-> <voters> <applied> <initialised>
//
// The child prints READY <peer id> once the node is open. EOF on stdin closes the node cleanly.

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// Environment of a child process. The parent sets them; VIGIL_CONSENSUS_CHILD=1 selects the
// child role of TestChildProcessNode.
const (
	childEnv          = "VIGIL_CONSENSUS_CHILD"
	childDirEnv       = "VIGIL_CHILD_DIR"       // data dir; holds keys/node.key and genesis.bin
	childPortEnv      = "VIGIL_CHILD_PORT"      // TCP port on 127.0.0.1 for libp2p
	childBootstrapEnv = "VIGIL_CHILD_BOOTSTRAP" // "1": bootstrap node
	childJoinEnv      = "VIGIL_CHILD_JOIN"      // multiaddr with /p2p/<id> of a join peer, or ""
)

// Child timings: raft timeouts of 300 ms so a crash costs well under a second of election.
const (
	childRaftTimeout    = 300 * time.Millisecond
	childProposeTimeout = 5 * time.Second  // bound of one CMD or DUMP inside the child
	childReplyTimeout   = 8 * time.Second  // how long the parent waits for one reply
	childReadyTimeout   = 20 * time.Second // start-up (race binaries start slowly on 2 cores)
)

// TestChildProcessNode is not a test: it is the entry point of a child node, run only when the
// parent harness re-executes the test binary with VIGIL_CONSENSUS_CHILD=1.
func TestChildProcessNode(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("child-process node: started only by the durability harness")
	}
	if err := runChild(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// runChild runs one node until stdin ends.
func runChild(in io.Reader, out io.Writer) error {
	dir := os.Getenv(childDirEnv)
	port := os.Getenv(childPortEnv)
	key, err := identity.LoadKeyFile(filepath.Join(dir, keysDirName, "node.key"), identity.RoleNode)
	if err != nil {
		return err
	}
	gb, err := os.ReadFile(filepath.Join(dir, "genesis.bin"))
	if err != nil {
		return err
	}
	gen, err := identity.DecodeCommand(gb)
	if err != nil {
		return err
	}
	h, err := libp2p.New(libp2p.Identity(key.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/"+port),
		libp2p.DisableRelay())
	if err != nil {
		return err
	}
	defer h.Close()

	level := slog.LevelWarn
	if os.Getenv("VIGIL_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Key, cfg.Host, cfg.Genesis = dir, key, h, gen
	cfg.Bootstrap = os.Getenv(childBootstrapEnv) == "1"
	if j := os.Getenv(childJoinEnv); j != "" {
		ai, err := peer.AddrInfoFromString(j)
		if err != nil {
			return err
		}
		cfg.Join = []peer.AddrInfo{*ai}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = childRaftTimeout, childRaftTimeout, childRaftTimeout/2
	cfg.ApplyTimeout = childProposeTimeout
	n, err := Open(cfg)
	if err != nil {
		return err
	}
	defer n.Close()

	var outMu sync.Mutex
	reply := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}
	reply("READY %s", h.ID())

	var wg sync.WaitGroup
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 4*identity.MaxCommandSize)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		verb, id := f[0], f[1]
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), childProposeTimeout)
			defer cancel()
			switch verb {
			case "CMD":
				if len(f) != 3 {
					reply("REJ %s bad_request", id)
					return
				}
				b, err := hex.DecodeString(f[2])
				if err != nil {
					reply("REJ %s bad_request", id)
					return
				}
				cmd, err := identity.DecodeCommand(b)
				if err != nil {
					reply("REJ %s %s", id, codeOf(err))
					return
				}
				res, err := n.Propose(ctx, cmd)
				if err != nil {
					reply("REJ %s %s", id, codeOf(err))
					return
				}
				reply("ACK %s %d", id, res.Index)
			case "DUMP":
				var names []string
				var hash [32]byte
				err := n.ConsistentRead(ctx, func(r *identity.Registry) {
					for _, a := range r.Agents() {
						names = append(names, a.Name)
					}
					hash = r.Hash()
				})
				if err != nil {
					reply("ERR %s %s", id, codeOf(err))
					return
				}
				list := "-"
				if len(names) > 0 {
					list = strings.Join(names, ",")
				}
				reply("DUMP %s %x %s", id, hash, list)
			case "STATUS":
				voters := 0
				if ms, err := n.Members(); err == nil {
					for _, m := range ms {
						if m.Suffrage == raft.Voter {
							voters++
						}
					}
				}
				var init bool
				n.Read(func(r *identity.Registry) { init = r.ClusterID() != identity.ClusterID{} })
				leader := "-"
				if l := n.Leader(); l != "" {
					leader = l.String()
				}
				reply("STATUS %s %s %s %d %d %t", id, n.State(), leader, voters, n.AppliedIndex(), init)
			default:
				reply("ERR %s bad_verb", id)
			}
		})
	}
	wg.Wait()
	return n.Close()
}

// childNode is the parent's handle on one child node across restarts: its identity, data dir
// and port stay; each start is a new process.
type childNode struct {
	t         testing.TB
	name      string
	dir       string
	port      int
	key       identity.PrivateKey
	bootstrap bool
	join      string // multiaddr with /p2p of the join peer, "" for none
	logPath   string

	mu   sync.Mutex
	proc *childProc // nil when not running
}

// childProc is one running child process.
type childProc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	ready   chan string   // the peer id from READY
	exited  chan struct{} // closed after Wait returned
	wmu     sync.Mutex    // serialises writers on stdin (one line per Write)
	mu      sync.Mutex
	pending map[uint64]chan string // request id → reply (the fields after the id); closed on exit
	dead    bool
}

var childReqID atomic.Uint64

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newChildNode prepares the data dir (keys/node.key, mode 0600) of a child node; it does not start it.
func newChildNode(t testing.TB, name string) *childNode {
	t.Helper()
	c := &childNode{t: t, name: name, dir: filepath.Join(t.TempDir(), name), port: freePort(t), key: mustKey(t)}
	c.logPath = c.dir + ".log"
	if err := os.MkdirAll(filepath.Join(c.dir, keysDirName), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteKeyFile(filepath.Join(c.dir, keysDirName, "node.key"), identity.RoleNode, c.key); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *childNode) addr() string { return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", c.port) }

func (c *childNode) p2pAddr() string { return c.addr() + "/p2p/" + c.key.ID().Peer().String() }

// writeGenesis writes the signed genesis to the data dir (genesis.bin).
func (c *childNode) writeGenesis(gen *identity.Command) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, "genesis.bin"), gen.Encode(), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// start runs the child and waits for READY.
func (c *childNode) start() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		c.t.Fatalf("%s: already running", c.name)
	}
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	fmt.Fprintf(logf, "---- %s start at %s\n", c.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcessNode$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1", childDirEnv+"="+c.dir, childPortEnv+"="+strconv.Itoa(c.port),
		childJoinEnv+"="+c.join)
	if c.bootstrap {
		cmd.Env = append(cmd.Env, childBootstrapEnv+"=1")
	}
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p := &childProc{cmd: cmd, stdin: stdin, ready: make(chan string, 1), exited: make(chan struct{}),
		pending: map[uint64]chan string{}}
	go p.readLoop(stdout, logf)
	select {
	case <-p.ready:
	case <-p.exited:
		c.t.Fatalf("%s exited before READY; log:\n%s", c.name, c.logTail(40))
	case <-time.After(childReadyTimeout):
		_ = cmd.Process.Kill()
		<-p.exited
		c.t.Fatalf("%s: no READY after %s; log:\n%s", c.name, childReadyTimeout, c.logTail(40))
	}
	c.proc = p
}

// readLoop dispatches replies until the child's stdout ends, then reaps it and fails every
// pending request (closed channel: outcome unknown).
func (p *childProc) readLoop(stdout io.Reader, logf *os.File) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		if len(f) >= 2 && f[0] == "READY" {
			p.ready <- f[1]
			continue
		}
		if len(f) < 2 {
			continue
		}
		id, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		rest := f[0]
		if len(f) == 3 {
			rest += " " + f[2]
		}
		p.mu.Lock()
		ch := p.pending[id]
		delete(p.pending, id)
		p.mu.Unlock()
		if ch != nil {
			ch <- rest
		}
	}
	_ = p.cmd.Wait()
	_ = logf.Close()
	p.mu.Lock()
	p.dead = true
	for id, ch := range p.pending {
		close(ch)
		delete(p.pending, id)
	}
	p.mu.Unlock()
	close(p.exited)
}

// request sends "VERB id args" and returns the reply fields after the id ("ACK 12", "REJ code",
// …), or ok=false when the child is not running, died, or did not answer in time.
func (c *childNode) request(verb, args string, timeout time.Duration) (string, bool) {
	c.mu.Lock()
	p := c.proc
	c.mu.Unlock()
	if p == nil {
		return "", false
	}
	id := childReqID.Add(1)
	ch := make(chan string, 1)
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return "", false
	}
	p.pending[id] = ch
	p.mu.Unlock()
	line := fmt.Sprintf("%s %d", verb, id)
	if args != "" {
		line += " " + args
	}
	p.wmu.Lock()
	_, err := io.WriteString(p.stdin, line+"\n")
	p.wmu.Unlock()
	if err != nil {
		return "", false
	}
	select {
	case r, ok := <-ch:
		return r, ok
	case <-time.After(timeout):
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
		return "", false
	}
}

// propose sends a signed command; it returns the index on ACK, the code on REJ, and
// acked=false with code "" when the outcome is unknown (no reply).
func (c *childNode) propose(cmd *identity.Command) (index uint64, code string, acked bool) {
	r, ok := c.request("CMD", hex.EncodeToString(cmd.Encode()), childReplyTimeout)
	if !ok {
		return 0, "", false
	}
	f := strings.Fields(r)
	switch {
	case len(f) == 2 && f[0] == "ACK":
		idx, err := strconv.ParseUint(f[1], 10, 64)
		return idx, "", err == nil
	case len(f) == 2 && f[0] == "REJ":
		return 0, f[1], false
	}
	return 0, "bad_reply:" + r, false
}

// childStatus is a parsed STATUS reply.
type childStatus struct {
	state       string
	leader      string
	voters      int
	applied     uint64
	initialised bool
}

func (c *childNode) status() (childStatus, bool) {
	r, ok := c.request("STATUS", "", 2*time.Second)
	if !ok {
		return childStatus{}, false
	}
	var s childStatus
	var verb string
	if _, err := fmt.Sscanf(r, "%s %s %s %d %d %t", &verb, &s.state, &s.leader, &s.voters, &s.applied, &s.initialised); err != nil || verb != "STATUS" {
		return childStatus{}, false
	}
	return s, true
}

// dump returns the registry hash and agent names from a consistent read at the child.
func (c *childNode) dump() (hash string, names map[string]bool, ok bool) {
	r, ok := c.request("DUMP", "", childReplyTimeout)
	if !ok {
		return "", nil, false
	}
	f := strings.Fields(r)
	if len(f) != 3 || f[0] != "DUMP" {
		return "", nil, false
	}
	names = map[string]bool{}
	if f[2] != "-" {
		for _, n := range strings.Split(f[2], ",") {
			names[n] = true
		}
	}
	return f[1], names, true
}

// kill SIGKILLs the child (no-op when it is not running) and waits until it is reaped.
func (c *childNode) kill() {
	c.mu.Lock()
	p := c.proc
	c.proc = nil
	c.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func (c *childNode) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc != nil
}

// logTail returns the last n lines of the child's stderr log (all its runs).
func (c *childNode) logTail(n int) string {
	b, _ := os.ReadFile(c.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// childCluster is a cluster of child-process nodes plus the operator keys the parent holds.
type childCluster struct {
	t     testing.TB
	gen   *identity.Command
	cid   identity.ClusterID
	ops   []identity.PrivateKey
	nodes []*childNode
}

// newChildCluster starts n1 (bootstrap, in the genesis), admits n2..nN with operator-signed
// AdmitNode commands through n1, starts them with n1 as join peer, and waits until the leader
// counts every node as a voter.
func newChildCluster(t testing.TB, size int) *childCluster {
	t.Helper()
	cc := &childCluster{t: t}
	for i := 1; i <= size; i++ {
		cc.nodes = append(cc.nodes, newChildNode(t, fmt.Sprintf("n%d", i)))
	}
	first := cc.nodes[0]
	first.bootstrap = true
	cc.gen, cc.ops = newGenesis(t, 1, []identity.NodeEntry{{Name: first.name, Key: first.key.Public(), Voter: true,
		Addrs: []string{first.addr()}}}, time.Now())
	cc.cid = cc.gen.ClusterID
	for _, n := range cc.nodes {
		n.writeGenesis(cc.gen)
	}
	first.start()
	cc.waitFor("genesis applied on n1", func() bool {
		s, ok := first.status()
		return ok && s.initialised
	})
	for _, n := range cc.nodes[1:] {
		admit := signed(t, cc.cid, &identity.AdmitNode{Node: identity.NodeEntry{Name: n.name, Key: n.key.Public(),
			Voter: true, Addrs: []string{n.addr()}}}, time.Now(), cc.ops[0])
		if _, code, ok := first.propose(admit); !ok {
			t.Fatalf("admit %s: %q", n.name, code)
		}
		n.join = first.p2pAddr()
	}
	for _, n := range cc.nodes[1:] {
		n.start()
	}
	cc.waitFor("all voters", func() bool {
		l := cc.leader()
		if l == nil {
			return false
		}
		s, ok := l.status()
		return ok && s.voters == size
	})
	return cc
}

// leader asks every running node for its state and returns the one that leads, or nil.
func (cc *childCluster) leader() *childNode {
	for _, n := range cc.nodes {
		if s, ok := n.status(); ok && s.state == raft.Leader.String() {
			return n
		}
	}
	return nil
}

func (cc *childCluster) waitFor(what string, cond func() bool) {
	cc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			cc.dumpLogs()
			cc.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dumpLogs logs the tail of every child's log (on failure).
func (cc *childCluster) dumpLogs() {
	for _, n := range cc.nodes {
		cc.t.Logf("---- %s log tail:\n%s", n.name, n.logTail(30))
	}
}
