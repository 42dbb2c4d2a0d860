package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/gossip"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node"
	"github.com/vigil-mesh/vigil/node/config"
)

type devOptions struct {
	dir      string
	nodes    int
	agents   int
	basePort int
	runFor   time.Duration
	logLevel string
	logFile  string        // where the nodes' logs go: "" DIR/dev.log, "-" standard error
	msgEvery time.Duration // demo-agent-1 sends demo-agent-2 a message this often; 0: no demo traffic
}

func newDevCmd() *cobra.Command {
	o := devOptions{}
	cmd := &cobra.Command{
		Use:   "dev --dir DIR",
		Short: "Run a local mesh on loopback: several nodes and demo agents, in one process",
		Long: `dev creates (on first use) and runs a local Vigil cluster on 127.0.0.1: node-1 is created by
'vigil init', the other nodes are admitted by an operator-signed command and join through node-1, and
a few demo agents are registered with the capability chat:* and connected with the Go SDK, one per
node in turn. Gossip is on: node-N listens on its libp2p port + 3 and every node holds node-1's
keyring (keys/gossip.keyring, written by init).

demo-agent-1 and demo-agent-2 also run through their own vigil monitor sidecar (unix socket in DIR),
driven by a small program in this process that speaks the sidecar's HTTP API: demo-agent-1 sends
demo-agent-2 a chat message every --message-every, each answers every message it receives (so a
message from example-agent, the Python example's agent, is answered too) and reports a tool_call
event for it. Their sidecars watch this process, so the process metrics they report (CPU, memory,
…) are the whole mesh's. dev prints a line on every change: first delivery, a refusal, a cut-off.

Everything is kept in DIR, so running dev again restarts the same cluster with its registry intact.
Stop it with Ctrl-C.`,
		Example: `  vigil dev --dir .vigil-dev
  vigil dev --dir /tmp/mesh --nodes 5 --base-port 9400
  vigil dev --dir /tmp/mesh --for 30s     # stop by itself after 30 seconds
  vigil dev --message-every 0             # demo agents only answer; no traffic of their own`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDev(ctx, cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", ".vigil-dev", "folder holding every node's data directory")
	f.IntVar(&o.nodes, "nodes", 3, "number of nodes (1 to 7); all are Raft voters")
	f.IntVar(&o.agents, "agents", 3, "number of demo agents to register")
	f.IntVar(&o.basePort, "base-port", 7400, "libp2p port of node-1; node-N listens on base-port + 10·(N-1)")
	f.DurationVar(&o.runFor, "for", 0, "stop this long after the mesh is up (0: run until interrupted)")
	f.StringVar(&o.logLevel, "log-level", "warn", "log level of the nodes: debug, info, warn, error")
	f.StringVar(&o.logFile, "log-file", "", "file the nodes' JSON logs are appended to (default DIR/dev.log; - for standard error)")
	f.DurationVar(&o.msgEvery, "message-every", 500*time.Millisecond, "demo-agent-1 messages demo-agent-2 this often, which answers each (0: no demo traffic)")
	return cmd
}

// devNode is one node of the local mesh: a full daemon (gater, registry, enforcement, agent
// protocol, admin API, HTTP), as `vigil node` runs it.
type devNode struct {
	name   string
	dir    string
	key    identity.PrivateKey
	daemon *node.Node
	node   *consensus.Node // daemon.Consensus()
	host   host.Host       // daemon.Host()
}

// devMesh is a running local mesh: its nodes, the demo agents' clients and their sidecars.
type devMesh struct {
	o       devOptions
	nodes   []*devNode
	cluster identity.ClusterID
	opKey   identity.PrivateKey
	demo    *devDemo // the demo agents (devagents.go); nil until started
	// logPath is the file the nodes log to ("" for standard error); closeLog closes it.
	logPath  string
	closeLog func()
}

// openDevLog opens where the nodes' logs go: DIR/dev.log unless --log-file says otherwise. The
// terminal keeps the mesh's summary and the demo agents' reports; raft's transient complaints
// while the nodes find each other stay in the file.
func openDevLog(o devOptions) (*os.File, string, error) {
	if o.logFile == "-" {
		return os.Stderr, "", nil
	}
	path := o.logFile
	if path == "" {
		if err := os.MkdirAll(o.dir, 0o700); err != nil {
			return nil, "", fmt.Errorf("dev: %w", err)
		}
		path = filepath.Join(o.dir, "dev.log")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("dev: --log-file: %w", err)
	}
	return f, path, nil
}

func runDev(ctx context.Context, out io.Writer, o devOptions) error {
	out = &lockedWriter{mu: new(sync.Mutex), w: out} // the demo agents report from their goroutines
	m, err := startDevMesh(ctx, out, o)
	if err != nil {
		return err
	}
	defer m.close()
	printDevStatus(ctx, out, m)
	m.demo.begin()

	var stopAfter <-chan time.Time // nil: wait for an interrupt
	if o.runFor > 0 {
		stopAfter = time.After(o.runFor)
	}
	select {
	case <-ctx.Done():
	case <-stopAfter:
	}
	fmt.Fprintln(out, "\nstopping the mesh")
	m.close()
	fmt.Fprintln(out, "mesh stopped")
	return nil
}

// startDevMesh creates (on first use) or restarts the mesh in o.dir, registers and connects the
// demo agents, starts their sidecars and traffic, and writes DIR/vigil.env. On error everything
// it started is stopped. The demo agents' reports go to out.
func startDevMesh(ctx context.Context, out io.Writer, o devOptions) (*devMesh, error) {
	if o.nodes < 1 || o.nodes > 7 {
		return nil, usagef("dev: --nodes %d: must be between 1 and 7", o.nodes)
	}
	if o.agents < 0 || o.agents > 100 {
		return nil, usagef("dev: --agents %d: must be between 0 and 100", o.agents)
	}
	if o.basePort < 1024 {
		return nil, usagef("dev: --base-port %d: must be 1024 or above (ports below need root)", o.basePort)
	}
	if o.basePort+10*o.nodes > 65535 {
		return nil, usagef("dev: --base-port %d: must leave room for %d nodes below 65536", o.basePort, o.nodes)
	}
	if o.msgEvery < 0 || (o.msgEvery > 0 && o.msgEvery < 10*time.Millisecond) {
		return nil, usagef("dev: --message-every %s: must be 0 (no demo traffic) or at least 10ms", o.msgEvery)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, usagef("dev: --log-level %q: %v", o.logLevel, err)
	}
	logOut, logPath, err := openDevLog(o)
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level}))
	closeLog := func() {
		if logOut != os.Stderr {
			logOut.Close()
		}
	}
	handed := false // the mesh closes the log from now on
	defer func() {
		if !handed {
			closeLog()
		}
	}()

	first := filepath.Join(o.dir, "node-1")
	if _, err := os.Stat(filepath.Join(first, "genesis.bin")); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(out, "creating a new cluster in %s\n\n", o.dir)
		err := runInit(out, initOptions{
			dir: first, trustDomain: "dev.vigil.local", operators: 1, threshold: 1,
			nodeName: "node-1", site: "site-1", advertise: devAddr(o.basePort, 1), dev: true,
		}, time.Now(), rand.Reader)
		if err != nil {
			return nil, err
		}
		fmt.Fprintln(out)
	} else {
		fmt.Fprintf(out, "restarting the cluster in %s (rm -rf %s starts afresh)\n\n", o.dir, o.dir)
	}
	genesisBytes, err := os.ReadFile(filepath.Join(first, "genesis.bin"))
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	genesis, err := identity.DecodeCommand(genesisBytes)
	if err != nil {
		return nil, fmt.Errorf("dev: %s/genesis.bin: %w", first, err)
	}
	opKey, err := identity.LoadKeyFile(filepath.Join(first, "keys", "operator-1.key"), identity.RoleOperator)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	keyring, err := devKeyring(first)
	if err != nil {
		return nil, err
	}

	m := &devMesh{o: o, cluster: genesis.ClusterID, opKey: opKey, nodes: make([]*devNode, o.nodes),
		logPath: logPath, closeLog: closeLog}
	ok := false
	defer func() {
		if !ok {
			m.close()
		}
	}()
	nodes := m.nodes
	// Nodes that already hold raft state (a restart) start together: one alone cannot win an
	// election. A new node is admitted by the operator first, since the other nodes' gaters refuse
	// it until the registry holds it, and then started.
	for i := 1; i <= o.nodes; i++ {
		if i == 1 || hasRaftState(filepath.Join(o.dir, fmt.Sprintf("node-%d", i))) {
			if nodes[i-1], err = startDevNode(o, i, genesisBytes, keyring, nodes[0], logger); err != nil {
				return nil, err
			}
		}
	}
	for _, n := range m.started() {
		if err := waitDevLeader(ctx, n); err != nil {
			return nil, err
		}
	}
	for i := 2; i <= o.nodes; i++ {
		if nodes[i-1] != nil {
			continue
		}
		name := fmt.Sprintf("node-%d", i)
		key, err := devNodeKey(filepath.Join(o.dir, name))
		if err != nil {
			return nil, err
		}
		if err := admitDevNode(ctx, nodes[0].node, genesis.ClusterID, opKey, name, key, devAddr(o.basePort, i)); err != nil {
			return nil, err
		}
		if nodes[i-1], err = startDevNode(o, i, genesisBytes, keyring, nodes[0], logger); err != nil {
			return nil, err
		}
		if err := waitDevLeader(ctx, nodes[i-1]); err != nil {
			return nil, err
		}
	}
	if err := registerDemoAgents(ctx, out, o, nodes[0].node, genesis.ClusterID, opKey); err != nil {
		return nil, err
	}
	if m.demo, err = startDemo(ctx, out, o, nodes, logger); err != nil {
		return nil, err
	}
	if err := writeDevEnv(o, nodes); err != nil {
		return nil, err
	}
	ok, handed = true, true
	return m, nil
}

// started returns the nodes started so far, in order.
func (m *devMesh) started() []*devNode {
	var out []*devNode
	for _, n := range m.nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// close stops the demo agents, then the nodes, last first. It may be called more than once.
func (m *devMesh) close() {
	if m.demo != nil {
		m.demo.close()
		m.demo = nil
	}
	live := m.started()
	for i := len(live) - 1; i >= 0; i-- {
		live[i].close()
	}
	m.nodes = nil
	if m.closeLog != nil {
		m.closeLog()
		m.closeLog = nil
	}
}

// devKeyring returns the gossip keyring of node-1 in dir (vigil init writes it), creating it for
// a mesh made before init wrote one. Every node of the mesh gets a copy.
func devKeyring(dir string) ([]byte, error) {
	path := filepath.Join(dir, "keys", "gossip.keyring")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		k, err := gossip.GenerateKeyringKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		if err := gossip.WriteKeyring(path, [][]byte{k}); err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
	}
	if _, err := gossip.LoadKeyring(path); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	return data, nil
}

func devAddr(basePort, i int) string {
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", basePort+10*(i-1))
}

// devGossipAddr is node i's gossip address (TCP and UDP).
func devGossipAddr(basePort, i int) string {
	return fmt.Sprintf("127.0.0.1:%d", basePort+10*(i-1)+3)
}

// devNodeKey loads the node key in dir, or creates it.
func devNodeKey(dir string) (identity.PrivateKey, error) {
	keyPath := filepath.Join(dir, "keys", "node.key")
	key, err := identity.LoadKeyFile(keyPath, identity.RoleNode)
	if errors.Is(err, os.ErrNotExist) {
		if key, err = identity.GenerateKey(rand.Reader); err == nil {
			if err = os.MkdirAll(filepath.Dir(keyPath), 0o700); err == nil {
				err = identity.WriteKeyFile(keyPath, identity.RoleNode, key)
			}
		}
	}
	if err != nil {
		return identity.PrivateKey{}, fmt.Errorf("dev: %s: %w", filepath.Base(dir), err)
	}
	return key, nil
}

// hasRaftState reports whether the node in dir has been a member before (see consensus).
func hasRaftState(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "raft-state"))
	return err == nil
}

// devConfig is node i's configuration: libp2p on base+10(i-1), the admin API one port above,
// HTTP two above, gossip three above, everything on 127.0.0.1.
func devConfig(o devOptions, i int, dir string, first *devNode) (config.Config, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return config.Config{}, err
	}
	port := o.basePort + 10*(i-1)
	cfg := config.DefaultConfig()
	cfg.Node = config.Node{Name: fmt.Sprintf("node-%d", i), Site: "site-1", DataDir: abs}
	cfg.Listen.Libp2p = []string{devAddr(o.basePort, i)}
	cfg.Listen.Admin = fmt.Sprintf("127.0.0.1:%d", port+1)
	cfg.Listen.HTTP = fmt.Sprintf("127.0.0.1:%d", port+2)
	cfg.Listen.AdminSocket = filepath.Join(abs, "admin.sock")
	cfg.Auth.Key = filepath.Join(abs, "keys", "node.key")
	cfg.Genesis = filepath.Join(abs, "genesis.bin")
	cfg.Log.Level = o.logLevel
	if i > 1 {
		cfg.Join = []string{fmt.Sprintf("%s/p2p/%s", devAddr(o.basePort, 1), first.key.ID())}
	}
	// Gossip: every node on its own port three above its libp2p port (TCP and UDP), one keyring
	// for all, and every other node joins node-1's.
	cfg.Gossip.Enabled = true
	cfg.Gossip.Bind = devGossipAddr(o.basePort, i)
	cfg.Gossip.Profile = config.GossipLocal
	cfg.Gossip.Keyring = filepath.Join(abs, "keys", "gossip.keyring")
	if i > 1 {
		cfg.Gossip.Join = []string{devGossipAddr(o.basePort, 1)}
	}
	return cfg, cfg.Validate()
}

// startDevNode starts node i's daemon; it does not wait for a leader.
func startDevNode(o devOptions, i int, genesisBytes, keyring []byte, first *devNode, logger *slog.Logger) (*devNode, error) {
	name := fmt.Sprintf("node-%d", i)
	dir := filepath.Join(o.dir, name)
	key, err := devNodeKey(dir)
	if err != nil {
		return nil, err
	}
	// Every node keeps its own copy of the genesis; a copy that differs from node-1's is refused.
	own, err := os.ReadFile(filepath.Join(dir, "genesis.bin"))
	if errors.Is(err, os.ErrNotExist) {
		own, err = genesisBytes, writeFileSync(filepath.Join(dir, "genesis.bin"), genesisBytes, 0o644)
	}
	if err != nil {
		return nil, fmt.Errorf("dev: %s: %w", name, err)
	}
	if !bytes.Equal(own, genesisBytes) {
		return nil, fmt.Errorf("dev: %s/genesis.bin differs from %s/node-1/genesis.bin: a node must hold its cluster's genesis", dir, o.dir)
	}
	// Every node holds node-1's gossip keyring.
	ringPath := filepath.Join(dir, "keys", "gossip.keyring")
	if cur, err := os.ReadFile(ringPath); err != nil || !bytes.Equal(cur, keyring) {
		if err := os.WriteFile(ringPath, keyring, 0o600); err != nil {
			return nil, fmt.Errorf("dev: %s: %w", name, err)
		}
	}
	cfg, err := devConfig(o, i, dir, first)
	if err != nil {
		return nil, fmt.Errorf("dev: %s: %w", name, err)
	}
	d, err := node.Start(cfg, logger) // the node adds its name to every line
	if err != nil {
		return nil, fmt.Errorf("dev: %s: %w (is another mesh running? try --base-port)", name, err)
	}
	return &devNode{name: name, dir: dir, key: key, daemon: d, node: d.Consensus(), host: d.Host()}, nil
}

// waitDevLeader waits until n knows a leader and its replica holds the genesis: a leader is
// elected before it has applied the genesis, and until then every other command is refused.
func waitDevLeader(ctx context.Context, n *devNode) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.node.WaitForLeader(wctx); err != nil {
		return fmt.Errorf("dev: %s: no leader: %w", n.name, err)
	}
	for {
		initialised := false
		err := n.node.ConsistentRead(wctx, func(r *identity.Registry) { initialised = r.Initialised() })
		if err == nil && initialised {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("dev: %s: genesis not applied: %w", n.name, errors.Join(err, wctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *devNode) close() { d.daemon.Close() }

// admitDevNode proposes an operator-signed admission for a node the registry does not hold yet.
func admitDevNode(ctx context.Context, via *consensus.Node, cluster identity.ClusterID, opKey identity.PrivateKey,
	name string, key identity.PrivateKey, addr string) error {
	known := false
	if err := via.ConsistentRead(ctx, func(r *identity.Registry) { _, known = r.Node(key.ID()) }); err != nil {
		return fmt.Errorf("dev: %s: %w", name, err)
	}
	if known {
		return nil
	}
	entry := identity.NodeEntry{Name: name, Key: key.Public(), Site: "site-1", Voter: true, Addrs: []string{addr}}
	return proposeSigned(ctx, via, cluster, opKey, &identity.AdmitNode{Node: entry})
}

// Demo agents: demo-agent-1…N, plus exampleAgent, which dev registers but never connects: it is
// the Python example's (make example-python).
const (
	demoCapability = "chat"
	exampleAgent   = "example-agent"
)

// demoCapabilities are what every demo agent (and exampleAgent) holds: chat with any agent, and a
// tool grant. Under the capability rule (docs/agents.md) "chat:*" lets it message anyone naming
// capability "chat".
var demoCapabilities = []string{demoCapability + ":*", "tool:search"}

// registerDemoAgents registers demo-agent-1…N and exampleAgent (keys in DIR/agents/) unless they
// already exist. A demo agent registered by an older dev without the chat capability is reported:
// its messages will be refused.
func registerDemoAgents(ctx context.Context, out io.Writer, o devOptions, via *consensus.Node, cluster identity.ClusterID,
	opKey identity.PrivateKey) error {
	agents := filepath.Join(o.dir, "agents")
	if err := os.MkdirAll(agents, 0o700); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	names := []string{exampleAgent}
	for i := 1; i <= o.agents; i++ {
		names = append(names, fmt.Sprintf("demo-agent-%d", i))
	}
	for _, name := range names {
		known, chat := false, false
		if err := via.ConsistentRead(ctx, func(r *identity.Registry) {
			var a identity.Agent
			if a, known = r.Agent(name); known {
				chat = slices.Contains(a.Capabilities, demoCapabilities[0])
			}
		}); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		if known {
			if !chat {
				fmt.Fprintf(out, "note: %s was registered without %s by an older vigil dev: its messages are refused (rm -rf %s starts afresh)\n",
					name, demoCapabilities[0], o.dir)
			}
			continue
		}
		key, err := identity.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		path := filepath.Join(agents, name+".key")
		os.Remove(path) // a key left by a run that stopped before registering it
		if err := identity.WriteKeyFile(path, identity.RoleAgent, key); err != nil {
			return err
		}
		role := "demo"
		if name == exampleAgent {
			role = "example"
		}
		reg := &identity.RegisterAgent{
			Name: name, Key: key.Public(),
			Labels:       map[string]string{"role": role, "site": "site-1"},
			Capabilities: demoCapabilities,
			ExpiresAt:    time.Now().Add(30 * 24 * time.Hour),
		}
		if err := proposeSigned(ctx, via, cluster, opKey, reg); err != nil {
			return fmt.Errorf("dev: register %s: %w", name, err)
		}
	}
	return nil
}

func proposeSigned(ctx context.Context, via *consensus.Node, cluster identity.ClusterID, key identity.PrivateKey,
	p identity.Payload) error {
	cmd, err := identity.NewCommand(cluster, p, time.Now(), rand.Reader)
	if err != nil {
		return err
	}
	cmd.Sign(key)
	res, err := via.Propose(ctx, cmd)
	if err != nil {
		return fmt.Errorf("dev: %s: %w", cmd.Kind, err)
	}
	if res.Err != nil {
		return fmt.Errorf("dev: %s: rejected: %w", cmd.Kind, res.Err)
	}
	return nil
}

// writeDevEnv writes DIR/vigil.env: the exports that point the CLI at this mesh.
func writeDevEnv(o devOptions, nodes []*devNode) error {
	abs, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, fmt.Sprintf("%s/p2p/%s", devAddr(o.basePort, len(addrs)+1), n.host.ID()))
	}
	env := fmt.Sprintf("export VIGIL_DEV_DIR=%q\nexport VIGIL_OPERATOR_KEY=%q\nexport VIGIL_NODES=%q\n"+
		"export VIGIL_ADMIN_SOCKET=%q\nexport VIGIL_ADMIN_ADDR=%q\nexport VIGIL_NODE_ID=%q\n",
		abs, filepath.Join(abs, "node-1", "keys", "operator-1.key"), strings.Join(addrs, ","),
		filepath.Join(abs, "node-1", "admin.sock"), fmt.Sprintf("127.0.0.1:%d", o.basePort+1), nodes[0].key.ID())
	return os.WriteFile(filepath.Join(o.dir, "vigil.env"), []byte(env), 0o644)
}

func printDevStatus(ctx context.Context, out io.Writer, m *devMesh) {
	o, nodes := m.o, m.nodes
	// Let every replica catch up with the leader first, so the table shows one registry.
	target := nodes[0].node.AppliedIndex()
	for _, n := range nodes {
		target = max(target, n.node.AppliedIndex())
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	for _, n := range nodes {
		_ = n.node.WaitApplied(wctx, target)
	}
	cancel()
	// Gossip members join within a probe or two of memberlist's local profile.
	wctx, cancel = context.WithTimeout(ctx, 3*time.Second)
	for _, n := range nodes {
		for n.daemon.GossipStats().Members < len(nodes) && wctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
	cancel()
	var buf bytes.Buffer // one write: the demo agents report on out concurrently
	tw := tabwriter.NewWriter(&buf, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tID\tADDRESS\tRAFT\tAPPLIED\tGOSSIP\tMEMBERS\tMETRICS")
	for i, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\thttp://%s/metrics\n", n.name, n.key.ID(), devAddr(o.basePort, i+1),
			n.node.State(), n.node.AppliedIndex(), n.daemon.GossipAddr(), n.daemon.GossipStats().Members, n.daemon.HTTPAddr())
	}
	tw.Flush()
	fmt.Fprintln(&buf)
	tw = tabwriter.NewWriter(&buf, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tID\tSPIFFE ID\tSTATUS\tCONNECTED TO\tRUNS")
	last := nodes[len(nodes)-1]
	err := last.node.ConsistentRead(ctx, func(r *identity.Registry) {
		for _, a := range r.Agents() {
			at, runs := m.demo.describe(a.Name)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Name, a.ID, a.SPIFFE, a.StatusAt(time.Now()), at, runs)
		}
	})
	tw.Flush()
	if err != nil {
		fmt.Fprintf(&buf, "reading the registry from %s: %v\n", last.name, err)
	}
	fmt.Fprintf(&buf, "\nthe agents above were read from %s's replica once the leader confirmed it is up to date (a consistent read)\n", last.name)
	m.demo.explain(&buf)
	fmt.Fprintf(&buf, "\ndata in %s", o.dir)
	if m.logPath != "" {
		fmt.Fprintf(&buf, "; node logs (level %s) in %s", o.logLevel, m.logPath)
	}
	fmt.Fprintf(&buf, "; Ctrl-C stops the mesh. In another shell:\n")
	fmt.Fprintf(&buf, "  source %s/vigil.env\n  ./bin/vigil members                       # the Raft members (node-1 answers)\n", o.dir)
	fmt.Fprintf(&buf, "  curl -s http://%s/metrics | grep -e vigil_gossip_members -e vigil_agent\n", nodes[0].daemon.HTTPAddr())
	fmt.Fprintf(&buf, "  ./bin/vigil agent list\n")
	if a := m.demo.talker(); a != "" {
		fmt.Fprintf(&buf, "  ./bin/vigil agent activity %s           # its messages and events, live on node-1\n", a)
		fmt.Fprintf(&buf, "  ./bin/vigil agent revoke %s --reason test   # cut off on every node at once; watch this window\n", a)
	}
	fmt.Fprintf(&buf, "  make example-python                       # a Python agent (%s) through vigil monitor\n", exampleAgent)
	out.Write(buf.Bytes())
}
