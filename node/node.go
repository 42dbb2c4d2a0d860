package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/multiformats/go-multiaddr"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/alerts"
	"github.com/vigil-mesh/vigil/node/config"
	"github.com/vigil-mesh/vigil/node/enforce"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

// Node is a running Vigil daemon.
type Node struct {
	cfg      config.Config
	log      *slog.Logger
	key      identity.PrivateKey
	host     host.Host
	views    *enforce.Views
	gater    *enforce.Gater
	cons     atomic.Pointer[consensus.Node] // nil until Start opens it; the gater may ask before
	enforcer *enforce.Enforcer
	agents   *agentproto.Server
	admin    *admin.Server
	adminLn  net.Listener
	metrics  *metrics
	httpSrv  *http.Server
	httpLn   net.Listener

	router    atomic.Pointer[agentproto.Router] // agent messaging; nil until Start starts it
	telemetry *telemetry.Buffer

	closers   []func() error // released by Close, last acquired first
	closeOnce sync.Once
	closeErr  error

	links  *linkGate     // the gater plus fault injection (faults.go)
	gossip *gossipLayer  // nil unless gossip.enabled (gossip.go)
	state  *alerts.Store // alerts, response decisions, detector checkpoints (DIR/state)
	detect *detection    // the detector engine's shell (detect.go)

	// removedAtStart is set when the data dir records that operators removed this node: it
	// then serves only /healthz, /readyz, /metrics and an admin API that answers with it.
	removedAtStart *consensus.RemovedError
}

// Start starts a node from a loaded configuration: it opens the key and genesis, starts the libp2p
// host behind the registry-backed gater, the replicated registry, enforcement, the agent protocol
// and the HTTP endpoint. On error everything already started is released.
func Start(cfg config.Config, log *slog.Logger) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	n := &Node{cfg: cfg, log: log.With("node", cfg.Node.Name)}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()

	if n.key, err = identity.LoadKeyFile(cfg.Auth.Key, identity.RoleNode); err != nil {
		return nil, fmt.Errorf("node: auth.key: %w", err)
	}
	genesis, err := loadGenesis(cfg.Genesis)
	if err != nil {
		return nil, err
	}
	join, err := parseJoin(cfg.Join)
	if err != nil {
		return nil, err
	}
	gp, err := genesis.DecodePayload()
	if err != nil {
		return nil, fmt.Errorf("node: genesis %s: %w", cfg.Genesis, err)
	}
	g := gp.(*identity.Genesis)
	bootstrapPeers, inGenesis := bootstrapSet(g, n.key.ID(), join)

	n.metrics = newMetrics()
	n.views = enforce.NewViews()
	gc := enforce.DefaultGaterConfig()
	gc.MaxStaleness = cfg.Auth.MaxStaleness
	gc.Bootstrap = bootstrapPeers
	gc.Staleness = func() time.Duration {
		if c := n.consensusNode(); c != nil {
			return c.LastContact()
		}
		return 0
	}
	gc.Member = func(p peer.ID) bool {
		c := n.consensusNode()
		return c != nil && c.TrustsNode(p)
	}
	if cfg.Auth.Enforcement == config.EnforcementStrict {
		gc.Mode = enforce.Strict
	}
	if n.gater, err = enforce.NewGater(n.views, gc); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.links = &linkGate{Gater: n.gater}
	if n.host, err = newHost(cfg, n.key, n.links); err != nil {
		return nil, err
	}
	n.closers = append(n.closers, n.host.Close)

	cc := consensus.DefaultConfig()
	cc.DataDir, cc.Key, cc.Host, cc.Genesis = cfg.Node.DataDir, n.key, n.host, genesis
	cc.Bootstrap = inGenesis
	cc.Join = join
	cc.AdmitHint = admitHint(cfg, n.key.ID(), n.host)
	cc.Logger = n.log
	cc.HeartbeatTimeout, cc.ElectionTimeout = cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout
	cc.LeaderLeaseTimeout = min(cc.LeaderLeaseTimeout, cfg.Raft.HeartbeatTimeout)
	cc.CommitTimeout, cc.SnapshotThreshold = cfg.Raft.CommitTimeout, cfg.Raft.SnapshotThreshold
	if inGenesis && len(join) > 0 {
		cc.Join = nil // a genesis node bootstraps; it joins no one
	}
	cons, err := consensus.Open(cc)
	if rm := (*consensus.RemovedError)(nil); errors.As(err, &rm) {
		return n, n.startRemoved(rm)
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.cons.Store(cons)
	n.closers = append(n.closers, cons.Close)

	// The node's state store (alerts, response decisions, detector checkpoints) opens before
	// the first View and before gossip, which records decisions from the first signal on, and
	// closes after both. The quarantines and throttles that were running when the node stopped
	// are read from it now: a quarantine goes into the overlay before NewEnforcer builds the
	// first View (no agent is admitted before it), a throttle into the router before it serves
	// a send, and startGossip re-arms the lift timers.
	if n.state, err = alerts.Open(filepath.Join(cfg.Node.DataDir, "state"), alerts.DefaultConfig()); err != nil {
		return nil, fmt.Errorf("node: state: %w", err)
	}
	n.closers = append(n.closers, n.state.Close)
	running, err := n.loadRunningResponses(time.Now())
	if err != nil {
		return nil, err
	}
	if !cfg.Gossip.Enabled && len(running) > 0 {
		// The response lives in the gossip layer (its lift timers, LiftDecision): with gossip
		// off there is nothing to lift a quarantine with, so none is re-applied.
		n.log.Warn("node: gossip is off: running quarantines and throttles are not restored", "agents", len(running))
		running = nil
	}
	for _, r := range running {
		if !r.QuarantineUntil.IsZero() {
			n.views.QuarantineOverlay(r.Peer)
		}
	}

	ec := enforce.DefaultConfig()
	ec.Logger = n.log
	ec.OnEnforce = n.metrics.observeEnforcement
	ec.BeforeCut = n.beforeCut
	if n.enforcer, err = enforce.NewEnforcer(n.host, n.gater, cons, ec); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.closers = append(n.closers, n.enforcer.Close)

	ac := agentproto.DefaultConfig()
	ac.ReverifyInterval = cfg.Auth.ReverifyInterval
	ac.Logger = n.log
	ac.Disconnect = func(p peer.ID, cause error) {
		n.log.Info("node: agent cut off", "peer", p.String(), "cause", cause)
		n.enforcer.Disconnect(p, enforce.ReasonRevoked)
		n.reportEvent(p, cause) // gossip.go: a forged re-verification becomes an anomaly signal
	}
	if n.agents, err = agentproto.NewServer(n.host, n.views, ac); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.closers = append(n.closers, n.agents.Close)
	if err := n.startMessaging(restoredThrottles(running)); err != nil {
		return nil, err
	}

	if cfg.Gossip.Enabled {
		if err := n.startGossip(g.ClusterID, running); err != nil {
			return nil, err
		}
	}

	if err := n.startDetection(); err != nil {
		return nil, err
	}

	if err := n.serveAdmin(cons); err != nil {
		return nil, err
	}
	n.metrics.register(n)
	if err := n.serveHTTP(); err != nil {
		return nil, err
	}
	n.log.Info("node: started", "id", n.key.ID().String(), "addrs", fmt.Sprint(n.host.Addrs()),
		"http", n.httpLn.Addr().String(), "bootstrap", inGenesis)
	return n, nil
}

// startRemoved runs a node whose data dir records its removal: no raft, no agents, no gossip;
// health, readiness and metrics on listen.http, and the admin API answering every call with
// the removal (serveAdmin's Ready hook).
func (n *Node) startRemoved(rm *consensus.RemovedError) error {
	n.removedAtStart = rm
	n.log.Error("node: this node was removed from the cluster; raft is not started", "reason", rm.Removal.String())
	if err := n.serveAdmin(nil); err != nil {
		return err
	}
	n.metrics.register(n)
	return n.serveHTTP()
}

// admitHint is the command an operator runs to admit this node, for join failures.
func admitHint(cfg config.Config, id identity.ID, h host.Host) string {
	addr := "MULTIADDR"
	if len(cfg.Advertise) > 0 {
		addr = cfg.Advertise[0]
	} else if as := h.Addrs(); len(as) > 0 {
		addr = as[0].String()
	}
	name := cfg.Node.Name
	if name == "" {
		name = "NAME"
	}
	return fmt.Sprintf("run `vigil members admit %s --node-id %s --addr %s` on an operator's machine", name, id, addr)
}

// consensusNode is the replicated registry, or nil while Start has not opened it.
func (n *Node) consensusNode() *consensus.Node { return n.cons.Load() }

// serveAdmin starts the admin API: mutual TLS with libp2p-key certificates on listen.admin, and
// the Unix socket for operators on this host.
func (n *Node) serveAdmin(cons *consensus.Node) error {
	ac := admin.DefaultConfig()
	ac.Key, ac.Logger = n.key, n.log
	ac.Metrics = n.metrics.reg
	ac.Activity = n.telemetry.Query
	ac.Alerts, ac.Decisions = alertBackend{n}, decisionBackend{n}
	if n.gossip != nil {
		ac.Gossip = n.gossip // gossip_keys.go: member states and the keyring methods
	}
	ac.Ready = n.ready
	var b admin.Backend = revocationGossip{cons, n}
	if cons == nil {
		b = nil // removed (startRemoved): Ready refuses every call before the backend is used
	}
	n.admin = admin.NewServer(b, ac)
	n.closers = append(n.closers, n.admin.Close)
	ln, err := net.Listen("tcp", n.cfg.Listen.Admin)
	if err != nil {
		return fmt.Errorf("node: listen.admin %s: %w", n.cfg.Listen.Admin, err)
	}
	n.adminLn = ln
	if err := n.admin.ServeTLS(ln); err != nil {
		ln.Close()
		return fmt.Errorf("node: admin API: %w", err)
	}
	if n.cfg.Listen.AdminSocket != "" {
		if err := n.admin.ServeUnix(n.cfg.Listen.AdminSocket); err != nil {
			return fmt.Errorf("node: listen.admin_socket: %w", err)
		}
	}
	return nil
}

// AdminAddr is the address the admin API listens on (mutual TLS).
func (n *Node) AdminAddr() net.Addr { return n.adminLn.Addr() }

// ID is the node's peer ID.
func (n *Node) ID() identity.ID { return n.key.ID() }

// Host is the node's libp2p host.
func (n *Node) Host() host.Host { return n.host }

// Consensus is the node's replica of the registry.
func (n *Node) Consensus() *consensus.Node { return n.consensusNode() }

// HTTPAddr is the address the metrics and health endpoint listens on.
func (n *Node) HTTPAddr() net.Addr { return n.httpLn.Addr() }

// Close stops the node: HTTP, the agent protocol, enforcement, the registry, the host. Idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			errs = append(errs, n.httpSrv.Shutdown(ctx))
			cancel()
		}
		for i := len(n.closers) - 1; i >= 0; i-- {
			errs = append(errs, n.closers[i]())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

func loadGenesis(path string) (*identity.Command, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node: genesis: %w", err)
	}
	cmd, err := identity.DecodeCommand(raw)
	if err != nil {
		return nil, fmt.Errorf("node: genesis %s: %w", path, err)
	}
	if cmd.Kind != identity.KindGenesis {
		return nil, fmt.Errorf("node: genesis %s: holds a %s command, not a genesis", path, cmd.Kind)
	}
	return cmd, nil
}

func parseJoin(addrs []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, a := range addrs {
		ma, err := multiaddr.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("node: join %q: %w", a, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(ma)
		if err != nil {
			return nil, fmt.Errorf("node: join %q: %w", a, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// bootstrapSet returns the peers the gater admits before the registry knows anyone (the genesis
// nodes and the configured join peers), and whether this node is a genesis node (it bootstraps).
func bootstrapSet(g *identity.Genesis, self identity.ID, join []peer.AddrInfo) ([]peer.ID, bool) {
	var peers []peer.ID
	inGenesis := false
	for _, gn := range g.Nodes {
		id := gn.Key.ID()
		if id == self {
			inGenesis = true
			continue
		}
		peers = append(peers, id.Peer())
	}
	for _, j := range join {
		peers = append(peers, j.ID)
	}
	return peers, inGenesis
}

// newHost starts the libp2p host: the configured security protocol only (TLS 1.3 or Noise), TCP
// and QUIC, the registry-backed gater, and the resource manager with libp2p's default limits
// scaled to this machine's memory and file descriptors.
func newHost(cfg config.Config, key identity.PrivateKey, g connmgr.ConnectionGater) (host.Host, error) {
	limiter := rcmgr.NewFixedLimiter(rcmgr.DefaultLimits.AutoScale())
	rm, err := rcmgr.NewResourceManager(limiter)
	if err != nil {
		return nil, fmt.Errorf("node: resource manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(key.Libp2p()),
		libp2p.ListenAddrStrings(cfg.Listen.Libp2p...),
		libp2p.ConnectionGater(g),
		libp2p.ResourceManager(rm),
		libp2p.DisableRelay(),
	}
	switch cfg.Auth.Method {
	case config.MethodNoise:
		opts = append(opts, libp2p.Security(noise.ID, noise.New))
	default:
		opts = append(opts, libp2p.Security(libp2ptls.ID, libp2ptls.New))
	}
	if len(cfg.Advertise) > 0 {
		var adv []multiaddr.Multiaddr
		for _, a := range cfg.Advertise {
			ma, err := multiaddr.NewMultiaddr(a)
			if err != nil {
				rm.Close()
				return nil, fmt.Errorf("node: advertise %q: %w", a, err)
			}
			adv = append(adv, ma)
		}
		opts = append(opts, libp2p.AddrsFactory(func([]multiaddr.Multiaddr) []multiaddr.Multiaddr { return adv }))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("node: listen on %v: %w", cfg.Listen.Libp2p, err)
	}
	return h, nil
}
