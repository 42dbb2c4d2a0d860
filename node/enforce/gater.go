package enforce

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Mode is the stale-view policy (DESIGN.md §4, auth.enforcement).
type Mode uint8

const (
	// BestEffort keeps enforcing the last known registry state however old it is.
	BestEffort Mode = iota + 1
	// Strict refuses new agent sessions once the view is older than MaxStaleness. Nodes and
	// operators are still admitted, so the node can reach the cluster and heal.
	Strict
)

func (m Mode) String() string {
	switch m {
	case BestEffort:
		return "best_effort"
	case Strict:
		return "strict"
	}
	return "invalid"
}

// GaterConfig configures a Gater.
type GaterConfig struct {
	// Mode is BestEffort (default) or Strict.
	Mode Mode
	// MaxStaleness is the view age beyond which Strict refuses new agent sessions. Default 30 s.
	MaxStaleness time.Duration
	// Staleness returns the age of the local view: the time since the node last heard from the
	// Raft leader (consensus.Node.LastContact). Required in Strict mode. Must not block.
	Staleness func() time.Duration
	// Now is the clock for expiry checks. Default time.Now.
	Now func() time.Time
	// Bootstrap peers are admitted as nodes while the view holds no genesis (a joining node must
	// reach the cluster before its registry knows anyone). Ignored once genesis is applied.
	Bootstrap []peer.ID
	// Member, if set, reports whether the replication layer trusts p as a cluster node although
	// the view does not admit it: a server of the persisted Raft configuration while a restarted
	// node replays its registry, or a node admitted while this one was away. Without it a restarted
	// leader could not reach the other nodes, nor they it. Consulted only for peers the view does
	// not know (or before there is a view), so it costs nothing on the common paths. Must not block.
	Member func(peer.ID) bool
}

// DefaultGaterConfig returns BestEffort, MaxStaleness 30 s, the wall clock.
func DefaultGaterConfig() GaterConfig {
	return GaterConfig{Mode: BestEffort, MaxStaleness: 30 * time.Second, Now: time.Now}
}

// Validate checks the mode, the staleness bound and that Strict has a Staleness func.
func (c GaterConfig) Validate() error {
	if c.Mode != BestEffort && c.Mode != Strict {
		return fmt.Errorf("enforce: mode: %d is neither best_effort nor strict: %w", c.Mode, ErrInvalidConfig)
	}
	if c.MaxStaleness <= 0 {
		return fmt.Errorf("enforce: max_staleness: must be > 0, got %s: %w", c.MaxStaleness, ErrInvalidConfig)
	}
	if c.Mode == Strict && c.Staleness == nil {
		return fmt.Errorf("enforce: staleness: strict mode needs a staleness func: %w", ErrInvalidConfig)
	}
	if c.Now == nil {
		return fmt.Errorf("enforce: now: clock is nil: %w", ErrInvalidConfig)
	}
	return nil
}

// Stats counts decisions by reason, separately for inbound/outbound secured connections
// (InterceptSecured) and outbound dials (InterceptPeerDial). Index with a Reason.
type Stats struct {
	Secured [NumReasons]uint64
	Dial    [NumReasons]uint64
}

// Gater is a libp2p ConnectionGater over the current View: it admits admitted nodes, operators
// and active unexpired agents, and refuses everyone else (deny by default). Safe for concurrent
// use; a decision takes no lock and allocates nothing.
type Gater struct {
	views     *Views
	cfg       GaterConfig
	bootstrap map[peer.ID]struct{}
	secured   [NumReasons]atomic.Uint64
	dial      [NumReasons]atomic.Uint64
}

var _ connmgr.ConnectionGater = (*Gater)(nil)

// NewGater returns a gater over views.
func NewGater(views *Views, cfg GaterConfig) (*Gater, error) {
	if views == nil {
		return nil, fmt.Errorf("enforce: views: nil: %w", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gater{views: views, cfg: cfg, bootstrap: make(map[peer.ID]struct{}, len(cfg.Bootstrap))}
	for _, p := range cfg.Bootstrap {
		g.bootstrap[p] = struct{}{}
	}
	return g, nil
}

// Views returns the views the gater decides from.
func (g *Gater) Views() *Views { return g.views }

// Admits is the decision for an existing session at now: the View's answer, plus bootstrap
// peers before genesis. Staleness does not apply (strict mode refuses only new sessions).
func (g *Gater) Admits(p peer.ID, now time.Time) Reason {
	v := g.views.Current()
	if v == nil || !v.initialised {
		if _, ok := g.bootstrap[p]; ok {
			return ReasonBootstrap
		}
	}
	r := ReasonNoView
	if v != nil {
		r = v.Decide(p, now.UnixNano())
	}
	if (r == ReasonUnknown || r == ReasonNoView) && g.cfg.Member != nil && g.cfg.Member(p) {
		return ReasonNode
	}
	return r
}

// Decide is the decision for a new session with p, without counting it.
func (g *Gater) Decide(p peer.ID) Reason {
	r := g.Admits(p, g.cfg.Now())
	if r == ReasonAgent && g.cfg.Mode == Strict && g.cfg.Staleness() > g.cfg.MaxStaleness {
		return ReasonStale
	}
	return r
}

// Stats returns a snapshot of the decision counters.
func (g *Gater) Stats() Stats {
	var s Stats
	for i := range s.Secured {
		s.Secured[i] = g.secured[i].Load()
		s.Dial[i] = g.dial[i].Load()
	}
	return s
}

// InterceptPeerDial refuses to dial a peer the registry does not admit.
func (g *Gater) InterceptPeerDial(p peer.ID) bool {
	r := g.Decide(p)
	g.dial[r].Add(1)
	return r.Allowed()
}

// InterceptAddrDial allows every address; the decision was made on the peer.
func (g *Gater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }

// InterceptAccept allows every inbound connection: the peer is known only after the handshake.
func (g *Gater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured is where the decision is made, for both directions, once the secure
// handshake has proved the remote peer's key.
func (g *Gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	r := g.Decide(p)
	g.secured[r].Add(1)
	return r.Allowed()
}

// InterceptUpgraded allows the connection: it was decided at InterceptSecured.
func (g *Gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
