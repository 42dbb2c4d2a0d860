package enforce

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// Config configures an Enforcer.
type Config struct {
	// Now is the clock for expiry and latency. Default time.Now.
	Now func() time.Time
	// Logger receives one Info line per closed peer. Default slog.Default().
	Logger *slog.Logger
	// OnEnforce, if set, is called (on the Enforcer's goroutine, or the Disconnect caller's) after
	// each closed peer, e.g. to feed a latency histogram. Must not block.
	OnEnforce func(Enforcement)
	// MinTimer is the shortest delay the expiry timer is armed with. Default 1 ms.
	MinTimer time.Duration
	// BeforeCut, if set, is called just before the connections of p are closed, e.g. to tell an
	// attached agent why it is cut off. Must return quickly: it delays the close.
	BeforeCut func(p peer.ID, r Reason)
}

// DefaultConfig returns the wall clock, slog.Default() and MinTimer 1 ms.
func DefaultConfig() Config {
	return Config{Now: time.Now, Logger: slog.Default(), MinTimer: time.Millisecond}
}

// Validate checks that the clock and logger are set and MinTimer is positive.
func (c Config) Validate() error {
	if c.Now == nil || c.Logger == nil {
		return fmt.Errorf("enforce: now and logger must be set: %w", ErrInvalidConfig)
	}
	if c.MinTimer <= 0 {
		return fmt.Errorf("enforce: min_timer: must be > 0, got %s: %w", c.MinTimer, ErrInvalidConfig)
	}
	return nil
}

// Enforcement records one peer cut off.
type Enforcement struct {
	Peer   peer.ID
	Name   string // registry name, "" if unknown
	Reason Reason // why it is no longer admitted
	// Since is when the cut-off became due: for a registry change, the time the Raft leader
	// appended the command (Change.At; the view update's start time when no audit entry names
	// the principal); for an expiry, the registration's ExpiresAt; for Disconnect, the call.
	Since time.Time
	// Latency is the time from Since to the close returning.
	Latency time.Duration
}

// Enforcer follows a Source, keeps the Gater's Views current and closes every connection (and
// with it every stream) of a peer that loses admission, within the view update. An expiry
// watcher closes agents whose registration expires, with one timer armed on the earliest expiry.
type Enforcer struct {
	h     host.Host
	g     *Gater
	src   Source
	cfg   Config
	kick  chan struct{}      // capacity 1: bursts of applies coalesce into one rebuild
	sync  chan chan struct{} // Refresh requests
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	unsub func()

	mu     sync.Mutex
	closed uint64
}

// NewEnforcer builds the first View synchronously (so the gater decides from the registry as soon
// as this returns), subscribes to src and starts the enforcement goroutine.
func NewEnforcer(h host.Host, g *Gater, src Source, cfg Config) (*Enforcer, error) {
	if h == nil || g == nil || src == nil {
		return nil, fmt.Errorf("enforce: host, gater and source must be set: %w", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Enforcer{h: h, g: g, src: src, cfg: cfg, kick: make(chan struct{}, 1),
		sync: make(chan chan struct{}), done: make(chan struct{})}
	timer := time.NewTimer(time.Hour)
	e.refresh(timer)
	e.unsub = src.Subscribe(func(uint64) {
		select { // never block the apply goroutine
		case e.kick <- struct{}{}:
		default:
		}
	})
	e.wg.Add(1)
	go e.loop(timer)
	return e, nil
}

// Refresh rebuilds the view and enforces it before returning (or returns ctx's error, or
// ErrClosed). The subscription does this by itself; Refresh is for callers that changed the
// registry out of band and tests.
func (e *Enforcer) Refresh(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case e.sync <- ack:
	case <-e.done:
		return fmt.Errorf("enforce: refresh: %w", ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("enforce: refresh: %w", ctx.Err())
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("enforce: refresh: %w", ctx.Err())
	}
}

// Disconnect closes every connection of p now, e.g. after a failed re-verification. Safe for
// concurrent use.
func (e *Enforcer) Disconnect(p peer.ID, reason Reason) {
	e.cut(p, "", reason, e.cfg.Now())
}

// Closed returns the number of peers closed so far.
func (e *Enforcer) Closed() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// Close stops the goroutine and the subscription. Idempotent; open connections stay open.
func (e *Enforcer) Close() error {
	e.once.Do(func() {
		e.unsub()
		close(e.done)
		e.wg.Wait()
	})
	return nil
}

func (e *Enforcer) loop(timer *time.Timer) {
	defer e.wg.Done()
	defer timer.Stop()
	for {
		select {
		case <-e.done:
			return
		case <-e.kick:
			e.refresh(timer)
		case ack := <-e.sync:
			e.refresh(timer)
			close(ack)
		case <-timer.C:
			now := e.cfg.Now()
			e.sweep(now)
			e.arm(timer, now)
		}
	}
}

// refresh rebuilds the View, closes every peer that lost admission, sweeps the connected peers
// and re-arms the expiry timer. Runs on the loop goroutine only (or before it starts).
func (e *Enforcer) refresh(timer *time.Timer) {
	start := e.cfg.Now()
	idx := e.src.AppliedIndex()
	var changes []Change
	e.src.Read(func(r *identity.Registry) { changes = e.g.views.Update(r, idx) })
	now := e.cfg.Now()
	v := e.g.views.Current()
	for _, c := range changes {
		if !c.Lost(now.UnixNano()) || !e.connected(c.Peer) {
			continue
		}
		since := c.At
		if since.IsZero() {
			since = start
		}
		e.cut(c.Peer, c.Name, v.Decide(c.Peer, now.UnixNano()), since)
	}
	e.sweep(now)
	e.arm(timer, now)
}

// sweep closes every connected peer the current view does not admit at now: expired agents, and
// anything a change list could miss (bootstrap peers after genesis, coalesced updates).
func (e *Enforcer) sweep(now time.Time) {
	for _, p := range e.h.Network().Peers() {
		r := e.g.Admits(p, now)
		if r.Allowed() {
			continue
		}
		since := now
		name := ""
		if v := e.g.views.Current(); v != nil {
			if en, ok := v.Lookup(p); ok {
				name = en.Name
				if r == ReasonExpired {
					since = time.Unix(0, en.ExpiresAt)
				}
			}
		}
		e.cut(p, name, r, since)
	}
}

// arm sets the timer to the earliest expiry of an active agent after now.
func (e *Enforcer) arm(timer *time.Timer, now time.Time) {
	timer.Stop()
	v := e.g.views.Current()
	if v == nil {
		return
	}
	next, ok := v.NextExpiry(now.UnixNano())
	if !ok {
		return
	}
	timer.Reset(max(time.Duration(next-now.UnixNano()), e.cfg.MinTimer))
}

func (e *Enforcer) connected(p peer.ID) bool { return len(e.h.Network().ConnsToPeer(p)) > 0 }

// cut closes every connection of p (libp2p resets their streams) and records the enforcement.
func (e *Enforcer) cut(p peer.ID, name string, r Reason, since time.Time) {
	if e.cfg.BeforeCut != nil {
		e.cfg.BeforeCut(p, r)
	}
	err := e.h.Network().ClosePeer(p)
	lat := e.cfg.Now().Sub(since)
	e.mu.Lock()
	e.closed++
	e.mu.Unlock()
	e.cfg.Logger.Info("enforce: closed peer", "peer", p, "name", name, "reason", r.String(),
		"latency", lat, "err", err)
	if e.cfg.OnEnforce != nil {
		e.cfg.OnEnforce(Enforcement{Peer: p, Name: name, Reason: r, Since: since, Latency: lat})
	}
}
