package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/gossip"
	"github.com/vigil-mesh/vigil/gossip/response"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/alerts"
	"github.com/vigil-mesh/vigil/node/config"
	"github.com/vigil-mesh/vigil/node/enforce"
)

// proposeStagger separates the automated-revocation proposals of the nodes that reach the quorum
// together (see proposeAutoRevoke).
const proposeStagger = 300 * time.Millisecond

// gossipLayer is the node's side of the gossip mesh: it publishes committed revocations,
// enforces verified revocations that arrive by gossip at once (the enforce overlay), and feeds
// anomaly signals to the response aggregator.
type gossipLayer struct {
	n    *Node
	mesh *gossip.Mesh

	// mu guards agg and lifts, and is held while a decision is stored (so the store's order is
	// the order of decisions) and while a quarantine is put on or lifted.
	mu    sync.Mutex
	agg   *response.Aggregator
	lifts map[peer.ID]*time.Timer // end of each local quarantine
	// policyQuorum is the policy's response.revoke_quorum when the document names it: a floor
	// above the registry's quorum (0: none).
	policyQuorum int
	// keyringNonces and liftNonces remember the operator-signed keyring ops and lifts seen
	// within the command window.
	keyringNonces, liftNonces opNonceCache

	revApplied, revAlready, revRefused, proposals, lifted atomic.Uint64
	decided                                               [response.Revoke + 1]atomic.Uint64 // decisions that changed a step, by action
	restored                                              [response.Revoke + 1]atomic.Uint64 // throttles and quarantines re-applied at start
	done                                                  chan struct{}
	wg                                                    sync.WaitGroup
}

// GossipStats is what the node's gossip layer has done.
type GossipStats struct {
	Members            int
	RevocationsApplied uint64 // gossip revocations that cut an agent off before Raft delivered them
	RevocationsAlready uint64 // gossip revocations the local replica had already applied
	RevocationsRefused uint64 // gossip revocations the local registry does not accept
	Proposals          uint64 // automated revocations this node proposed
	Mesh               map[gossip.Counter]uint64
}

// startGossip starts the gossip layer and re-arms the lift timers of the quarantines Start
// restored (running).
func (n *Node) startGossip(cluster identity.ClusterID, running []runningResponse) error {
	cfg := n.cfg.Gossip
	gc := gossip.DefaultConfig()
	gc.ClusterID, gc.Key = cluster, n.key
	gc.Site, gc.Role = n.cfg.Node.Site, "nonvoter"
	if n.cfg.Raft.Voter {
		gc.Role = "voter"
	}
	for _, a := range n.host.Addrs() {
		gc.Addrs = append(gc.Addrs, a.String())
	}
	if len(n.cfg.Advertise) > 0 {
		gc.Addrs = n.cfg.Advertise
	}
	gc.Admission = gossip.AdmissionFunc(n.admittedNode)
	switch cfg.Profile {
	case config.GossipWAN:
		gc.Profile = gossip.ProfileWAN
	case config.GossipLocal:
		gc.Profile = gossip.ProfileLocal
	default:
		gc.Profile = gossip.ProfileLAN
	}
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return fmt.Errorf("node: gossip.bind: %w", err)
	}
	gc.BindAddr, gc.BindPort = host, port
	if cfg.Advertise != "" {
		if gc.AdvertiseAddr, gc.AdvertisePort, err = splitHostPort(cfg.Advertise); err != nil {
			return fmt.Errorf("node: gossip.advertise: %w", err)
		}
	}
	if cfg.Keyring != "" {
		if gc.Keyring, err = gossip.LoadKeyring(cfg.Keyring); err != nil {
			return fmt.Errorf("node: gossip.keyring: %w (every node needs the same keyring; gossip.WriteKeyring creates one)", err)
		}
	} else {
		gc.AllowPlaintext = true
		n.log.Warn("node: gossip.keyring is empty: gossip travels unencrypted (payloads are still signed)")
	}
	gc.Logger = n.log.With("component", "gossip")
	l := &gossipLayer{n: n, done: make(chan struct{}), keyringNonces: opNonceCache{what: "keyring", store: n.state},
		liftNonces: opNonceCache{what: "lift", store: n.state}}
	if l.agg, err = response.New(response.DefaultConfig()); err != nil {
		return fmt.Errorf("node: response: %w", err)
	}
	l.restore(running)
	gc.OnRevocation = l.onRevocation
	gc.OnSignal = l.onSignal
	if l.mesh, err = gossip.Start(gc); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.gossip = l
	n.closers = append(n.closers, l.close)
	l.serveKeyring()
	l.serveLift()
	n.metrics.reg.MustRegister(&gossipCollector{l})
	if len(cfg.Join) > 0 {
		l.wg.Add(1)
		go l.joinLoop(cfg.Join)
	}
	n.log.Info("node: gossip started", "addr", l.mesh.Addr(), "profile", string(gc.Profile), "encrypted", len(gc.Keyring) > 0)
	return nil
}

func splitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", s)
	}
	return h, port, nil
}

// admittedNode answers the mesh's admission question from the current View (lock-free), or the
// replication layer's trust while the View does not know the node yet.
func (n *Node) admittedNode(id identity.ID) bool {
	if v := n.views.Current(); v != nil {
		if e, ok := v.Lookup(id.Peer()); ok {
			return e.Role == identity.RoleNode
		}
	}
	c := n.consensusNode()
	return c != nil && c.TrustsNode(id.Peer())
}

// joinLoop joins the configured addresses, and again whenever this node is alone (the others
// were down when it started, or a partition healed after everyone declared it dead).
func (l *gossipLayer) joinLoop(addrs []string) {
	defer l.wg.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		if l.mesh.NumMembers() <= 1 {
			if _, err := l.mesh.Join(addrs); err != nil {
				l.n.log.Debug("node: gossip join", "err", err)
			}
		}
		select {
		case <-l.done:
			return
		case <-t.C:
		}
	}
}

// close leaves the mesh, stops it (no more deliveries, so no new proposals start), then waits
// for the join loop and running proposals.
func (l *gossipLayer) close() error {
	l.n.host.RemoveStreamHandler(KeyringProtocol)
	l.n.host.RemoveStreamHandler(LiftProtocol)
	_ = l.mesh.Leave(time.Second)
	err := l.mesh.Close()
	close(l.done)
	l.wg.Wait()
	l.mu.Lock()
	for _, t := range l.lifts {
		t.Stop()
	}
	l.mu.Unlock()
	return err
}

// onRevocation applies a revocation received by gossip: verified against the local registry
// (authority, window, evidence), then enforced at once through the overlay, in best_effort and
// strict alike. Raft delivers the same command later; the overlay entry then goes.
func (l *gossipLayer) onRevocation(raw []byte, from identity.ID) {
	cmd, err := identity.DecodeCommand(raw)
	if err == nil {
		var v *identity.VerifiedCommand
		if v, err = cmd.Verify(); err == nil {
			var agent identity.Agent
			l.n.consensusNode().Read(func(r *identity.Registry) { agent, err = r.CheckRevocation(v, time.Now()) })
			if err == nil && agent.Status == identity.StatusRevoked {
				l.revAlready.Add(1) // Raft was first: nothing to do
				return
			}
			if err == nil {
				l.revApplied.Add(1)
				p := agent.ID.Peer()
				if l.n.views.RevokeOverlay(p) {
					l.n.enforcer.Disconnect(p, enforce.ReasonRevoked)
				}
				l.n.log.Info("node: revocation by gossip enforced", "agent", agent.Name, "peer", p.String(), "relayed_by", from.String())
				return
			}
		}
	}
	l.revRefused.Add(1)
	l.n.log.Warn("node: revocation by gossip refused", "relayed_by", from.String(), "err", err)
}

// onSignal feeds a verified signal from another admitted node to the aggregator.
func (l *gossipLayer) onSignal(s identity.Signal) { l.observe(s) }

func (l *gossipLayer) observe(s identity.Signal) {
	// Follow the registry's revoke_quorum (the default until genesis is applied): the FSM
	// enforces it anyway, this only avoids proposing what it would refuse. The policy's
	// response.revoke_quorum can raise it (never lower it): this node then waits for more
	// reporters before it proposes.
	q := identity.DefaultRevokeQuorum
	l.n.consensusNode().Read(func(r *identity.Registry) {
		if r.Initialised() {
			q = r.RevokeQuorum()
		}
	})
	l.mu.Lock()
	q = max(q, l.policyQuorum)
	if q != l.agg.Config().RevokeQuorum {
		if err := l.agg.SetRevokeQuorum(q); err != nil {
			l.n.log.Warn("node: response: revoke quorum", "quorum", q, "err", err)
		}
	}
	now := time.Now()
	d := l.agg.Observe(s, now)
	cut := false
	if d.Changed {
		l.decided[d.Action].Add(1)
		l.recordLocked(d, now)
		if d.Action == response.Quarantine && !d.DryRun {
			cut = l.quarantineLocked(d)
		}
	}
	l.mu.Unlock()
	if !d.Changed {
		return
	}
	l.n.log.Info("node: response decision", "agent", d.Agent.Name, "action", d.Action.String(),
		"reporters", d.Reporters, "signals", d.Signals, "dry_run", d.DryRun, "escalated", d.Escalated)
	if cut {
		l.n.enforcer.Disconnect(d.Agent.Key.ID().Peer(), enforce.ReasonQuarantined)
	}
	switch {
	case d.DryRun:
	case d.Action == response.Throttle:
		l.throttle(d)
	case d.Action == response.Revoke:
		l.wg.Add(1)
		go l.proposeAutoRevoke(d)
	}
}

// throttle limits the agent's sends at this node to d.Rate messages per second (burst d.Burst)
// until d.Until; its excess sends are refused with agentproto.CodeThrottled. A quarantine or
// revocation of the agent supersedes it (Router.CutOff).
func (l *gossipLayer) throttle(d response.Decision) {
	r := l.n.router.Load()
	if r == nil {
		return
	}
	if err := r.Throttle(d.Agent.Key.ID().Peer(), d.Rate, d.Burst, d.Until); err != nil {
		l.n.log.Warn("node: response: throttle", "agent", d.Agent.Name, "err", err)
	}
}

// unthrottle lifts the agent's throttle on this node (an operator's lift of the decision).
func (l *gossipLayer) unthrottle(p peer.ID) bool {
	r := l.n.router.Load()
	return r != nil && r.Unthrottle(p)
}

// recordLocked stores a decision that changed an agent's step in the node's state store, where
// ListDecisions reads it. A step back to none (a custom ladder's signals aged out) is counted
// but not stored. A failed write is logged; the decision is still carried out.
func (l *gossipLayer) recordLocked(d response.Decision, now time.Time) {
	if d.Action == response.None {
		return
	}
	rec := alerts.Decision{Time: now, Agent: d.Agent.Name, AgentID: d.Agent.Key.ID().String(), Action: d.Action.String(),
		Reporters: d.Reporters, Signals: d.Signals, MaxScore: d.MaxScore, Until: d.Until, Escalated: d.Escalated, DryRun: d.DryRun}
	if d.Action == response.Throttle {
		rec.Rate, rec.Burst = d.Rate, d.Burst
	}
	for _, s := range d.Evidence {
		rec.EvidenceReporters = append(rec.EvidenceReporters, s.Reporter.ID().String())
	}
	if _, err := l.n.state.AddDecision(rec); err != nil {
		l.n.log.Error("node: response decision not stored", "agent", d.Agent.Name, "action", d.Action.String(), "err", err)
	}
}

// quarantineLocked cuts the agent off on this node until d.Until (a renewed quarantine moves the
// end); it reports whether the agent was admitted before, so the caller closes its connections
// once l.mu is released. The registry is not changed: the quarantine is local.
func (l *gossipLayer) quarantineLocked(d response.Decision) bool {
	p := d.Agent.Key.ID().Peer()
	cut := l.n.views.QuarantineOverlay(p)
	l.armLiftLocked(p, d.Until)
	return cut
}

// restore takes over the quarantines and throttles Start re-applied from the stored decisions
// (the overlay entries and the router's throttles are already in place): it arms each
// quarantine's lift timer for the time left, counts them and logs each. The aggregator starts
// empty: the signals counted before the restart, and the quarantine count escalate_after
// reads, are not restored.
func (l *gossipLayer) restore(running []runningResponse) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range running {
		if !r.QuarantineUntil.IsZero() {
			l.armLiftLocked(r.Peer, r.QuarantineUntil)
			l.restored[response.Quarantine].Add(1)
			l.n.log.Info("node: response restored", "agent", r.Agent, "peer", r.Peer.String(), "action", "quarantine",
				"until", r.QuarantineUntil, "left", r.QuarantineUntil.Sub(now).Round(time.Millisecond), "decision", r.QuarantineID)
		}
		if !r.Throttle.Until.IsZero() {
			l.restored[response.Throttle].Add(1)
			l.n.log.Info("node: response restored", "agent", r.Agent, "peer", r.Peer.String(), "action", "throttle",
				"until", r.Throttle.Until, "left", r.Throttle.Until.Sub(now).Round(time.Millisecond), "rate", r.Throttle.Rate,
				"burst", r.Throttle.Burst, "decision", r.ThrottleID)
		}
	}
	if len(running) > 0 {
		l.n.log.Info("node: running response decisions restored", "quarantines", l.restored[response.Quarantine].Load(),
			"throttles", l.restored[response.Throttle].Load())
	}
}

// armLiftLocked (re)arms the timer that ends p's local quarantine at until; a renewal or a
// lift meanwhile disarms it.
func (l *gossipLayer) armLiftLocked(p peer.ID, until time.Time) {
	if l.lifts == nil {
		l.lifts = map[peer.ID]*time.Timer{}
	}
	if t := l.lifts[p]; t != nil {
		t.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(time.Until(until), func() {
		l.mu.Lock()
		if l.lifts[p] != t { // renewed or lifted meanwhile
			l.mu.Unlock()
			return
		}
		delete(l.lifts, p)
		l.n.views.LiftQuarantine(p)
		l.mu.Unlock()
		l.refresh()
	})
	l.lifts[p] = t
}

// refresh rebuilds the node's View from the registry (without the lifted overlay entries).
func (l *gossipLayer) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.n.enforcer.Refresh(ctx); err != nil {
		l.n.log.Warn("node: response: refresh after a lift", "err", err)
	}
}

// proposeAutoRevoke proposes an AutoRevokeAgent carrying the evidence, signed by this node, and
// gossips it once committed. Another node proposing the same revocation first is not an error.
func (l *gossipLayer) proposeAutoRevoke(d response.Decision) {
	defer l.wg.Done()
	// Every node that reaches the quorum decides revoke at about the same time. To avoid a burst
	// of proposals the FSM would refuse as duplicates, the reporters propose in the order of
	// their keys, proposeStagger apart, and everyone else after them; each first checks whether
	// the agent is already revoked.
	self := l.n.key.Public()
	rank, mine := 0, false
	for _, s := range d.Evidence {
		if s.Reporter == self {
			mine = true
		} else if bytes.Compare(s.Reporter.Bytes(), self.Bytes()) < 0 {
			rank++
		}
	}
	if !mine {
		rank = len(d.Evidence)
	}
	if rank > 0 {
		select {
		case <-l.done:
			return
		case <-time.After(time.Duration(rank) * proposeStagger):
		}
	}
	var (
		enabled, revoked bool
		cluster          identity.ClusterID
	)
	l.n.consensusNode().Read(func(r *identity.Registry) {
		enabled, cluster = r.AutomatedResponse(), r.ClusterID()
		a, ok := r.Agent(d.Agent.Name)
		revoked = ok && (a.Status == identity.StatusRevoked || a.ID.PublicKey() != d.Agent.Key)
	})
	if revoked {
		return // another node's proposal won, or the agent's key changed
	}
	if !enabled {
		l.n.log.Info("node: automated response is disabled in the registry; revocation not proposed", "agent", d.Agent.Name)
		return
	}
	cmd, err := identity.NewCommand(cluster, &identity.AutoRevokeAgent{Name: d.Agent.Name,
		Reason:  fmt.Sprintf("automated: %d nodes reported anomalies (max score %.2f)", d.Reporters, d.MaxScore),
		Signals: d.Evidence}, time.Now(), rand.Reader)
	if err != nil {
		l.n.log.Warn("node: automated revocation", "agent", d.Agent.Name, "err", err)
		return
	}
	cmd.Sign(l.n.key)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-l.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	l.proposals.Add(1)
	if err := (revocationGossip{l.n.consensusNode(), l.n}).propose(ctx, cmd); err != nil {
		l.n.log.Info("node: automated revocation not applied", "agent", d.Agent.Name, "err", err)
	}
}

// ReportAnomaly signs an anomaly signal about agent name by this node, gossips it, and counts it
// in this node's own aggregation. score is in [0, 1]; evidence is the digest of what the
// detector saw. It fails when gossip is off or the agent is unknown.
func (n *Node) ReportAnomaly(name, detector string, score float64, evidence [32]byte) error {
	l := n.gossip
	if l == nil {
		return errors.New("node: gossip is not enabled (gossip.enabled)")
	}
	var (
		agent   identity.Agent
		ok      bool
		cluster identity.ClusterID
	)
	n.consensusNode().Read(func(r *identity.Registry) { agent, ok = r.Agent(name); cluster = r.ClusterID() })
	if !ok {
		return fmt.Errorf("node: report anomaly: no agent %q", name)
	}
	s := identity.Signal{ClusterID: cluster, Subject: identity.SignalSubject{Name: name, Key: agent.ID.PublicKey()},
		Detector: detector, Score: score, EvidenceDigest: evidence, ObservedAt: time.Now()}
	if err := s.Sign(n.key, rand.Reader); err != nil {
		return fmt.Errorf("node: report anomaly: %w", err)
	}
	if err := l.mesh.PublishSignal(s); err != nil {
		return fmt.Errorf("node: report anomaly: %w", err)
	}
	l.observe(s)
	return nil
}

// GossipAddr is the host:port of this node's gossip mesh ("" when gossip is off).
func (n *Node) GossipAddr() string {
	if n.gossip == nil {
		return ""
	}
	return n.gossip.mesh.Addr()
}

// GossipJoin joins the mesh through the given host:port addresses.
func (n *Node) GossipJoin(addrs []string) (int, error) {
	if n.gossip == nil {
		return 0, errors.New("node: gossip is not enabled (gossip.enabled)")
	}
	return n.gossip.mesh.Join(addrs)
}

// GossipStats reports the gossip layer's counters (zero when gossip is off).
func (n *Node) GossipStats() GossipStats {
	l := n.gossip
	if l == nil {
		return GossipStats{}
	}
	return GossipStats{Members: l.mesh.NumMembers(), RevocationsApplied: l.revApplied.Load(), RevocationsAlready: l.revAlready.Load(),
		RevocationsRefused: l.revRefused.Load(), Proposals: l.proposals.Load(), Mesh: l.mesh.Stats()}
}

// Propose replicates a signed command through this node; a committed revocation is also
// gossiped, so nodes cut off from the Raft leader enforce it at once.
func (n *Node) Propose(ctx context.Context, cmd *identity.Command) (consensus.ApplyResult, error) {
	return revocationGossip{n.consensusNode(), n}.Propose(ctx, cmd)
}

// revocationGossip is the admin API's backend: the replicated registry, with every committed
// revocation proposed through this node also gossiped.
type revocationGossip struct {
	*consensus.Node
	n *Node
}

// Propose replicates cmd and, once a revocation is applied, gossips its signed bytes.
func (b revocationGossip) Propose(ctx context.Context, cmd *identity.Command) (consensus.ApplyResult, error) {
	res, err := b.Node.Propose(ctx, cmd)
	if err == nil && res.Err == nil && (cmd.Kind == identity.KindRevokeAgent || cmd.Kind == identity.KindAutoRevokeAgent) && b.n.gossip != nil {
		if perr := b.n.gossip.mesh.PublishRevocation(cmd.Encode()); perr != nil {
			b.n.log.Warn("node: gossip revocation", "err", perr)
		}
	}
	return res, err
}

func (b revocationGossip) propose(ctx context.Context, cmd *identity.Command) error {
	res, err := b.Propose(ctx, cmd)
	if err == nil {
		err = res.Err
	}
	return err
}

// reportEvent turns a node event into an anomaly signal when it is evidence of compromise: an
// agent that answered a re-verification challenge with a signature that does not verify under
// its registered key (someone else holds the connection, or the agent's key was swapped). An
// expired registration or an agent that went silent is not evidence and is not reported.
func (n *Node) reportEvent(p peer.ID, cause error) {
	if n.gossip == nil || !errors.Is(cause, agentproto.ErrBadSignature) {
		return
	}
	v := n.views.Current()
	if v == nil {
		return
	}
	e, ok := v.Lookup(p)
	if !ok || e.Role != identity.RoleAgent {
		return
	}
	if err := n.ReportAnomaly(e.Name, "reverify", 1, sha256.Sum256([]byte(cause.Error()))); err != nil {
		n.log.Warn("node: report anomaly", "agent", e.Name, "err", err)
	}
}

// serveDecisions answers GET /decisions on the local HTTP endpoint: the newest 100 stored
// response decisions (lifts included), newest first, as JSON. The admin API's ListDecisions
// filters and pages them.
func (n *Node) serveDecisions(w http.ResponseWriter, _ *http.Request) {
	out, err := n.Decisions(alerts.DecisionQuery{Limit: 100})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
