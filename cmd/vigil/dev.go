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
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/config"
)

type devOptions struct {
	dir      string
	nodes    int
	agents   int
	basePort int
	runFor   time.Duration
	logLevel string
}

func newDevCmd() *cobra.Command {
	o := devOptions{}
	cmd := &cobra.Command{
		Use:   "dev --dir DIR",
		Short: "Run a local mesh on loopback: several nodes and demo agents, in one process",
		Long: `dev creates (on first use) and runs a local Vigil cluster on 127.0.0.1: node-1 is created by
'vigil init', the other nodes are admitted by an operator-signed command and join through node-1, and
a few demo agents are registered. Everything is kept in DIR, so running dev again restarts the same
cluster with its registry intact. Stop it with Ctrl-C.`,
		Example: `  vigil dev --dir .vigil-dev
  vigil dev --dir /tmp/mesh --nodes 5 --base-port 9400
  vigil dev --dir /tmp/mesh --for 30s     # stop by itself after 30 seconds`,
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

func runDev(ctx context.Context, out io.Writer, o devOptions) error {
	if o.nodes < 1 || o.nodes > 7 {
		return usagef("dev: --nodes %d: must be between 1 and 7", o.nodes)
	}
	if o.agents < 0 || o.agents > 100 {
		return usagef("dev: --agents %d: must be between 0 and 100", o.agents)
	}
	if o.basePort < 1024 {
		return usagef("dev: --base-port %d: must be 1024 or above (ports below need root)", o.basePort)
	}
	if o.basePort+10*o.nodes > 65535 {
		return usagef("dev: --base-port %d: must leave room for %d nodes below 65536", o.basePort, o.nodes)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usagef("dev: --log-level %q: %v", o.logLevel, err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	first := filepath.Join(o.dir, "node-1")
	if _, err := os.Stat(filepath.Join(first, "genesis.bin")); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(out, "creating a new cluster in %s\n\n", o.dir)
		err := runInit(out, initOptions{
			dir: first, trustDomain: "dev.vigil.local", operators: 1, threshold: 1,
			nodeName: "node-1", site: "site-1", advertise: devAddr(o.basePort, 1), dev: true,
		}, time.Now(), rand.Reader)
		if err != nil {
			return err
		}
		fmt.Fprintln(out)
	} else {
		fmt.Fprintf(out, "restarting the cluster in %s (rm -rf %s starts afresh)\n\n", o.dir, o.dir)
	}
	genesisBytes, err := os.ReadFile(filepath.Join(first, "genesis.bin"))
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	genesis, err := identity.DecodeCommand(genesisBytes)
	if err != nil {
		return fmt.Errorf("dev: %s/genesis.bin: %w", first, err)
	}
	opKey, err := identity.LoadKeyFile(filepath.Join(first, "keys", "operator-1.key"), identity.RoleOperator)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}

	var nodes []*devNode
	// Nodes that already hold raft state (a restart) start together: one alone cannot win an
	// election. A new node is admitted by the operator first, since the other nodes' gaters refuse
	// it until the registry holds it, and then started.
	nodes = make([]*devNode, o.nodes)
	started := func() []*devNode {
		var out []*devNode
		for _, n := range nodes {
			if n != nil {
				out = append(out, n)
			}
		}
		return out
	}
	defer func() {
		live := started()
		for i := len(live) - 1; i >= 0; i-- {
			live[i].close()
		}
	}()
	for i := 1; i <= o.nodes; i++ {
		if i == 1 || hasRaftState(filepath.Join(o.dir, fmt.Sprintf("node-%d", i))) {
			if nodes[i-1], err = startDevNode(o, i, genesisBytes, nodes[0], logger); err != nil {
				return err
			}
		}
	}
	for _, n := range started() {
		if err := waitDevLeader(ctx, n); err != nil {
			return err
		}
	}
	for i := 2; i <= o.nodes; i++ {
		if nodes[i-1] != nil {
			continue
		}
		name := fmt.Sprintf("node-%d", i)
		key, err := devNodeKey(filepath.Join(o.dir, name))
		if err != nil {
			return err
		}
		if err := admitDevNode(ctx, nodes[0].node, genesis.ClusterID, opKey, name, key, devAddr(o.basePort, i)); err != nil {
			return err
		}
		if nodes[i-1], err = startDevNode(o, i, genesisBytes, nodes[0], logger); err != nil {
			return err
		}
		if err := waitDevLeader(ctx, nodes[i-1]); err != nil {
			return err
		}
	}
	if err := registerDemoAgents(ctx, o, nodes[0].node, genesis.ClusterID, opKey); err != nil {
		return err
	}
	agentHosts, attached, err := connectDemoAgents(ctx, o, nodes)
	defer func() {
		for _, h := range agentHosts {
			h.Close()
		}
	}()
	if err != nil {
		return err
	}
	if err := writeDevEnv(o, nodes); err != nil {
		return err
	}
	printDevStatus(ctx, out, o, nodes, attached)

	var stopAfter <-chan time.Time // nil: wait for an interrupt
	if o.runFor > 0 {
		stopAfter = time.After(o.runFor)
	}
	select {
	case <-ctx.Done():
	case <-stopAfter:
	}
	fmt.Fprintln(out, "\nstopping the mesh")
	for i := len(nodes) - 1; i >= 0; i-- {
		nodes[i].close()
	}
	nodes = nil
	fmt.Fprintln(out, "mesh stopped")
	return nil
}

func devAddr(basePort, i int) string {
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", basePort+10*(i-1))
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
// HTTP two above, everything on 127.0.0.1.
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
	return cfg, cfg.Validate()
}

// startDevNode starts node i's daemon; it does not wait for a leader.
func startDevNode(o devOptions, i int, genesisBytes []byte, first *devNode, logger *slog.Logger) (*devNode, error) {
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
	cfg, err := devConfig(o, i, dir, first)
	if err != nil {
		return nil, fmt.Errorf("dev: %s: %w", name, err)
	}
	d, err := node.Start(cfg, logger.With("node", name))
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

// registerDemoAgents registers demo-agent-1…N (keys in DIR/agents/) unless they already exist.
func registerDemoAgents(ctx context.Context, o devOptions, via *consensus.Node, cluster identity.ClusterID,
	opKey identity.PrivateKey) error {
	agents := filepath.Join(o.dir, "agents")
	if err := os.MkdirAll(agents, 0o700); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	for i := 1; i <= o.agents; i++ {
		name := fmt.Sprintf("demo-agent-%d", i)
		known := false
		if err := via.ConsistentRead(ctx, func(r *identity.Registry) { _, known = r.Agent(name) }); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		if known {
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
		reg := &identity.RegisterAgent{
			Name: name, Key: key.Public(),
			Labels:       map[string]string{"role": "demo", "site": "site-1"},
			Capabilities: []string{"message:demo-agent-*", "tool:search"},
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

// connectDemoAgents attaches every active demo agent to a node (round robin) from its own libp2p host,
// answering the node's re-verification challenges, as an agent would. It returns the hosts (to close
// on exit) and, per agent name, the node it is attached to.
func connectDemoAgents(ctx context.Context, o devOptions, nodes []*devNode) ([]host.Host, map[string]string, error) {
	var hosts []host.Host
	attached := map[string]string{}
	for i := 1; i <= o.agents; i++ {
		name := fmt.Sprintf("demo-agent-%d", i)
		active := false
		nodes[0].node.Read(func(r *identity.Registry) {
			a, ok := r.Agent(name)
			active = ok && a.StatusAt(time.Now()) == identity.StatusActive
		})
		if !active {
			continue // revoked, quarantined or expired, as an operator left it: the gaters refuse it
		}
		key, err := identity.LoadKeyFile(filepath.Join(o.dir, "agents", name+".key"), identity.RoleAgent)
		if err != nil {
			return hosts, attached, fmt.Errorf("dev: %w", err)
		}
		h, err := libp2p.New(libp2p.Identity(key.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			return hosts, attached, fmt.Errorf("dev: %s: %w", name, err)
		}
		hosts = append(hosts, h)
		agentproto.ServeReverify(h, key)
		n := nodes[(i-1)%len(nodes)]
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = agentproto.Attach(actx, h, peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()})
		cancel()
		if err != nil {
			return hosts, attached, fmt.Errorf("dev: attach %s to %s: %w", name, n.name, err)
		}
		attached[name] = n.name
	}
	return hosts, attached, nil
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

func printDevStatus(ctx context.Context, out io.Writer, o devOptions, nodes []*devNode, attached map[string]string) {
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
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tID\tADDRESS\tRAFT\tAPPLIED\tMETRICS")
	for i, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\thttp://%s/metrics\n", n.name, n.key.ID(), devAddr(o.basePort, i+1),
			n.node.State(), n.node.AppliedIndex(), n.daemon.HTTPAddr())
	}
	tw.Flush()
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tID\tSPIFFE ID\tSTATUS\tCONNECTED TO")
	last := nodes[len(nodes)-1]
	err := last.node.ConsistentRead(ctx, func(r *identity.Registry) {
		for _, a := range r.Agents() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.ID, a.SPIFFE, a.StatusAt(time.Now()), attached[a.Name])
		}
	})
	tw.Flush()
	if err != nil {
		fmt.Fprintf(out, "reading the registry from %s: %v\n", last.name, err)
	}
	fmt.Fprintf(out, "\nthe agents above were read from %s's own replica (a consistent read)\n", last.name)
	fmt.Fprintf(out, "data in %s; Ctrl-C stops the mesh. In another shell:\n", o.dir)
	fmt.Fprintf(out, "  source %s/vigil.env\n  ./bin/vigil members\n  ./bin/vigil agent list\n", o.dir)
	for i := 1; i <= o.agents; i++ {
		if name := fmt.Sprintf("demo-agent-%d", i); attached[name] != "" {
			fmt.Fprintf(out, "  ./bin/vigil agent revoke %s --reason test   # cut off on every node at once\n", name)
			break
		}
	}
}
