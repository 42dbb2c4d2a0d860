package agentproto

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/enforce"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

// RouterConfig configures a Router.
type RouterConfig struct {
	// MaxBody caps a message body in bytes (≤ MaxBodySize). Default MaxBodySize (64 KiB).
	MaxBody int
	// DeliverTimeout bounds one message end to end at the sender's node (locate, relay, the
	// destination's handler). Default 10 s.
	DeliverTimeout time.Duration
	// LocateTimeout bounds the fan-out query for a destination's node. Default 2 s.
	LocateTimeout time.Duration
	// LocateMaxAge is the oldest proof of presence a locate answer may carry (Presence: the
	// destination's signature of the answering node's challenge, dated by that node's clock); an
	// answer without a valid proof this fresh is ignored. It also bounds how long a located node
	// is cached. It must cover a node's longest wait between two challenges, ReverifyInterval +
	// ChallengeTimeout, on every node (so keep auth.reverify_interval alike across the cluster),
	// or an honest node's proofs go stale and messages to its agents fail. Default 0: 2 × the
	// server's ReverifyInterval + its ChallengeTimeout (65 s with the server's defaults; 10 min
	// 5 s with node.yaml's reverify_interval of 5 min).
	LocateMaxAge time.Duration
	// IdleTimeout closes a messaging stream that carries no request for this long. Default 5 min.
	IdleTimeout time.Duration
	// MaxThrottled bounds the agents throttled at once (Router.Throttle); when full, expired
	// throttles go first, then the one that ends first. Default DefaultMaxThrottled (65536).
	MaxThrottled int
	// Nodes returns the other admitted nodes (with addresses, if known) a destination is
	// looked up on. Default: the nodes of the current View, at the addresses the host knows.
	Nodes func() []peer.AddrInfo
	// Record receives every telemetry record (telemetry.Buffer.Add). Must not block. Default: drop.
	Record func(telemetry.Record)
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Throttles run from the start, set before any handler is registered, so no send of these
	// agents passes unthrottled (a node re-applies its running throttles after a restart).
	// Each is checked as Router.Throttle checks it; one that has ended by Now is ignored. At
	// most MaxThrottled. Default none.
	Throttles []ThrottleSpec
}

// ThrottleSpec is one agent's throttle as RouterConfig.Throttles sets it: rate messages per
// second, bursts of up to burst, until until.
type ThrottleSpec struct {
	Peer  peer.ID
	Rate  float64
	Burst int
	Until time.Time
}

// DefaultRouterConfig returns the defaults above.
func DefaultRouterConfig() RouterConfig {
	return RouterConfig{MaxBody: MaxBodySize, DeliverTimeout: 10 * time.Second, LocateTimeout: 2 * time.Second,
		IdleTimeout: 5 * time.Minute, MaxThrottled: DefaultMaxThrottled, Now: time.Now, Logger: slog.Default(), Record: func(telemetry.Record) {}}
}

// Validate checks the caps and durations and that the clock, logger and Record are set.
func (c RouterConfig) Validate() error {
	switch {
	case c.MaxBody <= 0 || c.MaxBody > MaxBodySize:
		return fmt.Errorf("agentproto: max_body: must be 1..%d, got %d: %w", MaxBodySize, c.MaxBody, ErrInvalidConfig)
	case c.DeliverTimeout <= 0:
		return fmt.Errorf("agentproto: deliver_timeout: must be > 0, got %s: %w", c.DeliverTimeout, ErrInvalidConfig)
	case c.LocateTimeout <= 0:
		return fmt.Errorf("agentproto: locate_timeout: must be > 0, got %s: %w", c.LocateTimeout, ErrInvalidConfig)
	case c.LocateMaxAge < 0:
		return fmt.Errorf("agentproto: locate_max_age: must be ≥ 0 (0: derived from the server's reverify_interval), got %s: %w", c.LocateMaxAge, ErrInvalidConfig)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("agentproto: idle_timeout: must be > 0, got %s: %w", c.IdleTimeout, ErrInvalidConfig)
	case c.MaxThrottled < 1 || c.MaxThrottled > 1<<24:
		return fmt.Errorf("agentproto: max_throttled: must be 1..%d, got %d: %w", 1<<24, c.MaxThrottled, ErrInvalidConfig)
	case c.Now == nil || c.Logger == nil || c.Record == nil:
		return fmt.Errorf("agentproto: now, logger and record must be set: %w", ErrInvalidConfig)
	case len(c.Throttles) > c.MaxThrottled:
		return fmt.Errorf("agentproto: throttles: %d, more than max_throttled %d: %w", len(c.Throttles), c.MaxThrottled, ErrInvalidConfig)
	}
	for i, t := range c.Throttles {
		if t.Peer == "" {
			return fmt.Errorf("agentproto: throttles[%d]: peer must be set: %w", i, ErrInvalidConfig)
		}
		if p := throttleProblem(t.Rate, t.Burst); p != "" {
			return fmt.Errorf("agentproto: throttles[%d] (%s): %s: %w", i, t.Peer, p, ErrInvalidConfig)
		}
	}
	return nil
}

// RouterStats counts the router's outcomes.
type RouterStats struct {
	// LocateUnproven counts the locate answers ignored because they said "attached" without a
	// valid proof of presence, indexed by why (a PresenceCheck; index PresenceOK stays 0).
	LocateUnproven [numPresenceChecks]uint64
}

// Router is the node side of agent messaging: sessions of attached agents, sends from them,
// relays from and to other nodes, deliveries to attached agents, locate queries and reports.
// Every message is authorised at the sender's node and again at the destination's node.
type Router struct {
	srv    *Server
	cfg    RouterConfig
	prefix string
	seq    atomic.Uint64

	deliver, relay, locate *Pool

	mu       sync.Mutex
	sessions map[peer.ID]*session
	where    map[peer.ID]location   // destination agent → the node it was last proved attached to
	missing  map[peer.ID]time.Time  // destination agent → when a locate last found it nowhere
	warned   map[peer.ID]*warnState // answering node → its last unproved-answer warning

	unproven [numPresenceChecks]atomic.Uint64

	names atomic.Pointer[nameIndex]

	throttled *throttles // agents whose sends the node's response limits

	done      chan struct{} // closed by Close: stops refreshLoop
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// location is where a destination was found: node, proved there until until (its proof's
// timestamp + LocateMaxAge), after which it is looked for again.
type location struct {
	node  peer.ID
	until time.Time
}

// warnState rate-limits the warning about one node's unproved locate answers.
type warnState struct {
	at         time.Time
	suppressed int
}

type session struct {
	st    network.Stream
	ended chan struct{} // closed when the agent's side of the stream ends
	once  sync.Once

	mu     sync.Mutex // serialises writes on st
	closed bool
	sent   []byte // encoding of the registration last written
}

// update writes reg on the session if it differs from the last one written.
func (s *session) update(reg *Registration) {
	enc := Encode(reg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || bytes.Equal(enc, s.sent) {
		return
	}
	_ = s.st.SetWriteDeadline(time.Now().Add(defaultIOTimeout))
	if WriteEnvelope(s.st, reg) == nil {
		s.sent = enc
	}
}

// noticeWait bounds how long CutOff waits for the agent to read its Notice: closing the
// connection at once would discard a frame the agent has not read yet.
const noticeWait = 10 * time.Millisecond

func (s *session) close(n *Notice) {
	s.once.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closed = true
		if n != nil {
			_ = s.st.SetWriteDeadline(time.Now().Add(noticeWait))
			if WriteEnvelope(s.st, n) == nil {
				_ = s.st.CloseWrite()
				t := time.NewTimer(noticeWait)
				select {
				case <-s.ended: // the agent read the notice and reset the stream
				case <-t.C:
				}
				t.Stop()
			}
		}
		_ = s.st.Reset()
	})
}

// missingTTL is how long a destination found on no node is answered destination_unreachable
// without a new fan-out query; maxMissing bounds that memory.
const (
	// registrationRefresh is how often the router checks for a new view to send attached agents
	// their changed registrations.
	registrationRefresh = time.Second
	missingTTL          = time.Second
	maxMissing          = 4096
	// unprovenWarnEvery is the least time between two warnings about one node's unproved locate
	// answers (a lying node answers every query); maxWarned bounds that memory.
	unprovenWarnEvery = time.Minute
	maxWarned         = 1024
)

type nameIndex struct {
	v     *enforce.View
	names map[string]peer.ID
}

// NewRouter registers the messaging handlers on the server's host.
func NewRouter(srv *Server, cfg RouterConfig) (*Router, error) {
	if srv == nil {
		return nil, fmt.Errorf("agentproto: router: server must be set: %w", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A proof is at most ReverifyInterval + ChallengeTimeout old when the next one replaces it.
	minAge := srv.cfg.ReverifyInterval + srv.cfg.ChallengeTimeout
	if cfg.LocateMaxAge == 0 {
		cfg.LocateMaxAge = minAge + srv.cfg.ReverifyInterval
	} else if cfg.LocateMaxAge < minAge {
		return nil, fmt.Errorf("agentproto: locate_max_age: %s is shorter than the server's reverify_interval + challenge_timeout (%s), so honest nodes' proofs would go stale: %w",
			cfg.LocateMaxAge, minAge, ErrInvalidConfig)
	}
	var pfx [6]byte
	if _, err := rand.Read(pfx[:]); err != nil {
		return nil, fmt.Errorf("agentproto: router: id prefix: %w", err)
	}
	h := srv.h
	r := &Router{srv: srv, cfg: cfg, prefix: hex.EncodeToString(pfx[:]) + "-",
		deliver: NewPool(h, DeliverProtocol, true), relay: NewPool(h, RelayProtocol, false),
		locate: NewPool(h, LocateProtocol, false), sessions: map[peer.ID]*session{}, where: map[peer.ID]location{},
		missing: map[peer.ID]time.Time{}, warned: map[peer.ID]*warnState{}, throttled: newThrottles(cfg.MaxThrottled)}
	now := cfg.Now()
	for _, t := range cfg.Throttles {
		if _, err := r.throttled.set(t.Peer, t.Rate, t.Burst, t.Until, now); err != nil {
			return nil, err // not reached: Validate checked each
		}
	}
	r.cfg.Throttles = nil // applied; the router does not keep the caller's slice
	if r.cfg.Nodes == nil {
		r.cfg.Nodes = r.viewNodes
	}
	r.done = make(chan struct{})
	r.wg.Add(1)
	go r.refreshLoop()
	h.SetStreamHandler(SessionProtocol, r.handleSession)
	serve := func(fn func(peer.ID, Message) Message) network.StreamHandler {
		return func(s network.Stream) {
			p := s.Conn().RemotePeer()
			ServeLoop(s, r.cfg.IdleTimeout, func(m Message) Message { return fn(p, m) })
		}
	}
	h.SetStreamHandler(SendProtocol, serve(r.onSend))
	h.SetStreamHandler(ReportProtocol, serve(r.onReport))
	h.SetStreamHandler(RelayProtocol, serve(r.onRelay))
	h.SetStreamHandler(LocateProtocol, serve(r.onLocate))
	return r, nil
}

// Close removes the handlers and ends every session (without a notice).
func (r *Router) Close() error {
	r.closeOnce.Do(func() { close(r.done) })
	r.wg.Wait()
	h := r.srv.h
	for _, p := range []string{string(SessionProtocol), string(SendProtocol), string(ReportProtocol), string(RelayProtocol), string(LocateProtocol)} {
		h.RemoveStreamHandler(protocol.ID(p))
	}
	r.mu.Lock()
	ss := r.sessions
	r.sessions = map[peer.ID]*session{}
	r.mu.Unlock()
	for _, s := range ss {
		s.close(nil)
	}
	r.deliver.Close()
	r.relay.Close()
	r.locate.Close()
	return nil
}

// Stats returns a snapshot of the counters.
func (r *Router) Stats() RouterStats {
	var st RouterStats
	for i := range r.unproven {
		st.LocateUnproven[i] = r.unproven[i].Load()
	}
	return st
}

// Attached reports whether agent p holds a session with this node.
func (r *Router) Attached(p peer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.sessions[p]
	return ok
}

// AttachedCount is the number of agents attached to this node.
func (r *Router) AttachedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// CutOff tells attached agent p why it is being cut off (a Notice on its session) and ends the
// session. Wire it to enforce.Config.BeforeCut: it waits for the agent to read the notice (one
// round trip), at most 2 × noticeWait (20 ms) for an agent that does not answer.
func (r *Router) CutOff(p peer.ID, why enforce.Reason) {
	switch why {
	case enforce.ReasonRevoked, enforce.ReasonQuarantined, enforce.ReasonUnknown:
		r.throttled.remove(p) // superseded: the agent is cut off anyway
	}
	r.mu.Lock()
	s := r.sessions[p]
	delete(r.sessions, p)
	r.mu.Unlock()
	if s == nil {
		return
	}
	reason := why.String()
	if v := r.srv.views.Current(); v != nil {
		if a, ok := v.Agent(p); ok && a.Reason != "" {
			reason = a.Reason
		}
	}
	s.close(&Notice{Code: why.String(), Reason: reason})
	r.deliver.Forget(p)
}

// Throttle limits the sends of agent p at this node to rate messages per second, with bursts of
// up to burst, until until (a response decision). Excess sends are refused with CodeThrottled
// before anything else is done for them; p stays attached. Calling it again renews the
// throttle (what is left in the bucket is kept); an until not after now lifts it. A revocation
// or quarantine of p (CutOff) supersedes it. At most RouterConfig.MaxThrottled agents are
// throttled: beyond, the one whose throttle ends first is dropped (logged).
func (r *Router) Throttle(p peer.ID, rate float64, burst int, until time.Time) error {
	now := r.cfg.Now()
	evicted, err := r.throttled.set(p, rate, burst, until, now)
	if err != nil || !until.After(now) {
		return err
	}
	if evicted != "" {
		r.cfg.Logger.Warn("agentproto: throttle table full: the throttle ending first was dropped",
			"dropped", evicted, "max", r.cfg.MaxThrottled)
	}
	r.cfg.Logger.Debug("agentproto: agent throttled", "peer", p, "rate", rate, "burst", burst, "until", until)
	return nil
}

// Unthrottle lifts p's throttle; it reports whether one was running.
func (r *Router) Unthrottle(p peer.ID) bool { return r.throttled.remove(p) }

// Throttled returns p's running throttle.
func (r *Router) Throttled(p peer.ID) (ThrottleState, bool) { return r.throttled.get(p, r.cfg.Now()) }

// ThrottledCount is the number of agents throttled now (it drops the throttles that ended).
func (r *Router) ThrottledCount() int { return r.throttled.prune(r.cfg.Now()) }

func (r *Router) handleSession(st network.Stream) {
	p := st.Conn().RemotePeer()
	_ = st.SetDeadline(time.Now().Add(r.srv.cfg.RequestTimeout))
	var answer Message
	var why error
	if _, err := ReadEnvelope(st); err != nil {
		answer, why = &Refusal{Code: CodeBadRequest, Reason: "malformed attach request"}, err
	} else {
		answer, why = r.srv.lookup(p, r.srv.cfg.Now())
	}
	if why != nil {
		r.srv.refused.Add(1)
		r.cfg.Logger.Info("agentproto: session refused", "peer", p, "err", why)
		_ = WriteEnvelope(st, answer)
		_ = st.Close()
		return
	}
	r.srv.attached.Add(1)
	answered := r.srv.startSession(p)
	s := &session{st: st, ended: make(chan struct{})}
	s.mu.Lock() // the registration is the first frame, before any update
	r.mu.Lock()
	old := r.sessions[p]
	r.sessions[p] = s
	r.mu.Unlock()
	if old != nil {
		old.close(nil)
	}
	err := WriteEnvelope(st, answer)
	s.sent = Encode(answer)
	s.mu.Unlock()
	answered()
	if err != nil {
		r.endSession(p, s)
		return
	}
	_ = st.SetDeadline(time.Time{})
	// The agent writes nothing more; the read ends when it closes the session or the
	// connection goes.
	var one [1]byte
	_, _ = st.Read(one[:])
	close(s.ended)
	r.endSession(p, s)
}

func (r *Router) endSession(p peer.ID, s *session) {
	r.mu.Lock()
	current := r.sessions[p] == s
	if current {
		delete(r.sessions, p)
	}
	r.mu.Unlock()
	s.close(nil)
	if current {
		r.deliver.Forget(p) // its idle delivery streams died with the session's connection
	}
}

// refreshLoop writes an attached agent's registration again on its session when the registry
// changes it (a renewal moves its expiry), checking each RegistrationRefresh whether the view
// changed. Cut-offs do not wait for it: they go through CutOff at once.
func (r *Router) refreshLoop() {
	defer r.wg.Done()
	t := time.NewTicker(registrationRefresh)
	defer t.Stop()
	var seen *enforce.View
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		v := r.srv.views.Current()
		if v == nil || v == seen {
			continue
		}
		seen = v
		r.mu.Lock()
		ss := make(map[peer.ID]*session, len(r.sessions))
		maps.Copy(ss, r.sessions)
		r.mu.Unlock()
		now := r.cfg.Now()
		for p, s := range ss {
			if m, err := r.srv.lookup(p, now); err == nil {
				if reg, ok := m.(*Registration); ok {
					s.update(reg)
				}
			}
		}
	}
}

func (r *Router) newID() string { return r.prefix + strconv.FormatUint(r.seq.Add(1), 36) }

func refusal(code string, hop Hop, rule, reason string) *MsgRefusal {
	return &MsgRefusal{Code: code, Rule: rule, Hop: hop, Reason: reason}
}

// resolve finds the destination by name, then by peer ID.
func (r *Router) resolve(v *enforce.View, to string) (identity.Agent, bool) {
	idx := r.names.Load()
	if idx == nil || idx.v != v {
		idx = &nameIndex{v: v, names: make(map[string]peer.ID, len(v.Agents()))}
		for _, a := range v.Agents() {
			idx.names[a.Name] = a.ID.Peer()
		}
		r.names.Store(idx)
	}
	if p, ok := idx.names[to]; ok {
		return v.Agent(p)
	}
	if id, err := identity.ParseID(to); err == nil {
		return v.Agent(id.Peer())
	}
	return identity.Agent{}, false
}

func (r *Router) onSend(p peer.ID, m Message) Message {
	start := r.cfg.Now()
	send, ok := m.(*Send)
	if !ok {
		return refusal(CodeBadMessage, HopSenderNode, "send stream carries Send", fmt.Sprintf("unexpected message type %d", m.msgType()))
	}
	rec := telemetry.Record{Time: start, AgentID: p.String(), Kind: telemetry.KindSend, Action: send.Capability,
		Peer: send.To, Bytes: len(send.Body)}
	var answer Message
	// The throttle comes first: a throttled agent's excess sends cost the node nothing more.
	if ok, th, wait := r.throttled.allow(p, start); ok {
		answer = r.send(p, send, start, &rec)
	} else {
		if v := r.srv.views.Current(); v != nil {
			if a, ok := v.Agent(p); ok {
				rec.Agent = a.Name
			}
		}
		answer = refusal(CodeThrottled, HopSenderNode, throttleRule(th), fmt.Sprintf(
			"the node's response throttles this agent to %s msg/s (burst %d): the next send is allowed in %s",
			strconv.FormatFloat(th.Rate, 'g', 4, 64), th.Burst, max(wait.Round(time.Millisecond), time.Millisecond)))
	}
	rec.Time = r.cfg.Now()
	rec.Latency = rec.Time.Sub(start)
	if ref, ok := answer.(*MsgRefusal); ok {
		rec.Outcome, rec.Hop = ref.Code, ref.Hop.String()
	} else {
		rec.Outcome = telemetry.OutcomeOK
	}
	r.cfg.Record(rec)
	return answer
}

func (r *Router) send(p peer.ID, m *Send, now time.Time, rec *telemetry.Record) Message {
	v := r.srv.views.Current()
	if v == nil {
		return refusal(CodeMsgUnavailable, HopSenderNode, "node has a registry view", "this node has no registry view yet")
	}
	sender, ok := v.Agent(p)
	if !ok {
		return refusal(CodeSenderInactive, HopSenderNode, "sender must be a registered agent", "this key is not a registered agent")
	}
	rec.Agent = sender.Name
	if !r.Attached(p) {
		return refusal(CodeSenderInactive, HopSenderNode, "sender must be attached", sender.Name+" holds no session with this node")
	}
	if len(m.Body) > r.cfg.MaxBody {
		return refusal(CodeBadMessage, HopSenderNode, fmt.Sprintf("body ≤ %d bytes", r.cfg.MaxBody), fmt.Sprintf("body of %d bytes", len(m.Body)))
	}
	dest, ok := r.resolve(v, m.To)
	if !ok {
		return refusal(CodeUnknownDestination, HopSenderNode, "destination must be a registered agent", fmt.Sprintf("no agent named %q", m.To))
	}
	rec.Peer = dest.Name
	if ref := Authorize(sender, dest, m.Capability, now, HopSenderNode); ref != nil {
		return ref
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.DeliverTimeout)
	defer cancel()
	id := r.newID()
	dp := dest.ID.Peer()
	if r.Attached(dp) {
		return r.deliverLocal(ctx, sender, dest, &Deliver{ID: id, From: sender.Name, FromID: p, To: dest.Name,
			Capability: m.Capability, SentAt: now, Body: m.Body})
	}
	relay := &Relay{ID: id, From: p, To: dp, Capability: m.Capability, SentAt: now, Body: m.Body}
	for attempt := 0; attempt < 2; attempt++ {
		n, ok := r.locateAgent(ctx, dest, attempt > 0)
		if !ok {
			return refusal(CodeDestinationUnreachable, HopSenderNode, "destination must be attached to a reachable node",
				dest.Name+" is not attached to any node this node reached")
		}
		resp, err := r.relay.Call(ctx, n, relay)
		if err != nil {
			r.forget(dp, n)
			if errors.Is(err, ErrUnreachable) && ctx.Err() == nil {
				continue // nothing was sent: look for the destination again
			}
			// The relay may have been handled: never send it twice.
			return refusal(CodeDestinationUnreachable, HopSenderNode, "delivery confirmed by the destination's node",
				"the relay failed after the message was sent, so it may have been delivered: "+err.Error())
		}
		switch resp := resp.(type) {
		case *Receipt:
			return resp
		case *MsgRefusal:
			if resp.Code == CodeDestinationUnreachable && resp.Hop == HopReceiverNode {
				r.forget(dp, n) // it moved: look again once
				continue
			}
			return resp
		default:
			return refusal(CodeDestinationUnreachable, HopSenderNode, "relay answers Receipt or refusal", fmt.Sprintf("answer of type %d", resp.msgType()))
		}
	}
	return refusal(CodeDestinationUnreachable, HopSenderNode, "destination must be attached to a reachable node",
		dest.Name+" was not found where it was located")
}

// deliverLocal hands a message to an agent attached to this node and records the receipt.
func (r *Router) deliverLocal(ctx context.Context, sender, dest identity.Agent, d *Deliver) Message {
	start := r.cfg.Now()
	rec := telemetry.Record{Time: start, Agent: dest.Name, AgentID: dest.ID.String(), Kind: telemetry.KindReceive,
		Action: d.Capability, Peer: sender.Name, Bytes: len(d.Body)}
	answer := r.deliverTo(ctx, dest, d)
	rec.Time = r.cfg.Now()
	rec.Latency = rec.Time.Sub(start)
	if ref, ok := answer.(*MsgRefusal); ok {
		rec.Outcome, rec.Hop = ref.Code, ref.Hop.String()
	} else {
		rec.Outcome = telemetry.OutcomeOK
	}
	r.cfg.Record(rec)
	return answer
}

func (r *Router) deliverTo(ctx context.Context, dest identity.Agent, d *Deliver) Message {
	resp, err := r.deliver.Call(ctx, dest.ID.Peer(), d)
	if err != nil {
		return refusal(CodeDestinationUnreachable, HopReceiverNode, "destination must accept the delivery", err.Error())
	}
	switch resp := resp.(type) {
	case *Ack:
		return &Receipt{ID: d.ID}
	case *MsgRefusal:
		resp.Hop = HopReceiver // the agent speaks only for itself
		return resp
	}
	return refusal(CodeDestinationUnreachable, HopReceiverNode, "destination answers Ack or refusal", fmt.Sprintf("answer of type %d", resp.msgType()))
}

func (r *Router) onRelay(n peer.ID, m Message) Message {
	start := r.cfg.Now()
	rl, ok := m.(*Relay)
	if !ok {
		return refusal(CodeBadMessage, HopReceiverNode, "relay stream carries Relay", fmt.Sprintf("unexpected message type %d", m.msgType()))
	}
	v := r.srv.views.Current()
	if v == nil {
		return refusal(CodeMsgUnavailable, HopReceiverNode, "node has a registry view", "this node has no registry view yet")
	}
	if e, ok := v.Lookup(n); !ok || e.Role != identity.RoleNode {
		r.cfg.Logger.Warn("agentproto: relay from a peer that is not an admitted node", "peer", n)
		return refusal(CodeNotNode, HopReceiverNode, "relays come from admitted nodes", n.String()+" is not an admitted node")
	}
	rec := telemetry.Record{Time: start, AgentID: rl.To.String(), Kind: telemetry.KindReceive, Action: rl.Capability,
		Peer: rl.From.String(), Bytes: len(rl.Body)}
	refuse := func(ref *MsgRefusal) Message {
		rec.Time = r.cfg.Now()
		rec.Outcome, rec.Hop, rec.Latency = ref.Code, ref.Hop.String(), rec.Time.Sub(start)
		r.cfg.Record(rec)
		return ref
	}
	dest, ok := v.Agent(rl.To)
	if !ok {
		return refuse(refusal(CodeUnknownDestination, HopReceiverNode, "destination must be a registered agent", "no agent with ID "+rl.To.String()))
	}
	rec.Agent = dest.Name
	sender, ok := v.Agent(rl.From)
	if !ok {
		return refuse(refusal(CodeSenderInactive, HopReceiverNode, "sender must be a registered agent", "no agent with ID "+rl.From.String()))
	}
	rec.Peer = sender.Name
	if len(rl.Body) > r.cfg.MaxBody {
		return refuse(refusal(CodeBadMessage, HopReceiverNode, fmt.Sprintf("body ≤ %d bytes", r.cfg.MaxBody), fmt.Sprintf("body of %d bytes", len(rl.Body))))
	}
	if ref := Authorize(sender, dest, rl.Capability, start, HopReceiverNode); ref != nil {
		return refuse(ref)
	}
	if !r.Attached(rl.To) {
		return refuse(refusal(CodeDestinationUnreachable, HopReceiverNode, "destination must be attached here", dest.Name+" holds no session with this node"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.DeliverTimeout)
	defer cancel()
	return r.deliverLocal(ctx, sender, dest, &Deliver{ID: rl.ID, From: sender.Name, FromID: rl.From, To: dest.Name,
		Capability: rl.Capability, SentAt: rl.SentAt, Body: rl.Body})
}

func (r *Router) onLocate(n peer.ID, m Message) Message {
	l, ok := m.(*Locate)
	v := r.srv.views.Current()
	if !ok || v == nil {
		return &Located{}
	}
	if e, ok := v.Lookup(n); !ok || e.Role != identity.RoleNode {
		return refusal(CodeNotNode, HopReceiverNode, "locate queries come from admitted nodes", n.String()+" is not an admitted node")
	}
	// "Attached" only with the agent's proof: a session whose first challenge is still running
	// (right after the attach) is waited for, at most ChallengeTimeout.
	if !r.Attached(l.Agent) {
		return &Located{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.srv.cfg.ChallengeTimeout)
	defer cancel()
	pr, ok := r.srv.awaitPresence(ctx, l.Agent)
	if !ok || !r.Attached(l.Agent) {
		return &Located{}
	}
	return &Located{Attached: true, Proof: &pr}
}

func (r *Router) onReport(p peer.ID, m Message) Message {
	rep, ok := m.(*Report)
	if !ok {
		return refusal(CodeBadMessage, HopSenderNode, "report stream carries Report", fmt.Sprintf("unexpected message type %d", m.msgType()))
	}
	v := r.srv.views.Current()
	var a identity.Agent
	if v != nil {
		a, ok = v.Agent(p)
	}
	if v == nil || !ok || !r.Attached(p) {
		return refusal(CodeSenderInactive, HopSenderNode, "reporter must be an attached agent", "no session with this node")
	}
	now := r.cfg.Now()
	for _, e := range rep.Events {
		r.cfg.Record(telemetry.Record{Time: now, Agent: a.Name, AgentID: p.String(), Kind: telemetry.KindEvent,
			Action: e.Kind + ":" + e.Name, Value: e.Value, Outcome: telemetry.OutcomeOK})
	}
	return &Ack{}
}

// locateAgent returns the node agent dest is attached to: the cached answer while its proof is
// fresh, or the first node of a fan-out query that says so with a proof (CheckPresence) that dest
// holds a session there (fresh: skip the cache). An answer "attached" without a valid proof is
// taken as "not attached", counted and logged.
func (r *Router) locateAgent(ctx context.Context, dest identity.Agent, fresh bool) (peer.ID, bool) {
	p := dest.ID.Peer()
	if !fresh {
		r.mu.Lock()
		loc, ok := r.where[p]
		miss, missed := r.missing[p]
		r.mu.Unlock()
		if ok && r.cfg.Now().Before(loc.until) {
			return loc.node, true
		}
		// A destination found nowhere a moment ago is not looked for again at once, so a sender
		// cannot make this node query every other node for each message.
		if missed && r.cfg.Now().Sub(miss) < missingTTL {
			return "", false
		}
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.LocateTimeout)
	defer cancel()
	self := r.srv.h.ID()
	found := make(chan location, 1)
	var wg sync.WaitGroup
	for _, ai := range r.cfg.Nodes() {
		if ai.ID == self {
			continue
		}
		if len(ai.Addrs) > 0 {
			r.srv.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
		}
		wg.Add(1)
		go func(n peer.ID) {
			defer wg.Done()
			resp, err := r.locate.Call(ctx, n, &Locate{Agent: p})
			l, ok := resp.(*Located)
			if err != nil || !ok || !l.Attached {
				return
			}
			now := r.cfg.Now()
			if why := CheckPresence(l.Proof, dest.Key, n, p, now, r.cfg.LocateMaxAge); why != PresenceOK {
				r.unprovenAnswer(n, dest, l.Proof, why)
				return
			}
			// Cached until the proof is stale; one dated ahead (within PresenceSkew) buys no more.
			until := l.Proof.Timestamp
			if until.After(now) {
				until = now
			}
			select {
			case found <- location{node: n, until: until.Add(r.cfg.LocateMaxAge)}:
			default:
			}
		}(ai.ID)
	}
	go func() { wg.Wait(); close(found) }()
	loc, ok := <-found
	r.mu.Lock()
	if ok {
		r.where[p] = loc
		delete(r.missing, p)
	} else {
		if len(r.missing) >= maxMissing {
			clear(r.missing)
		}
		r.missing[p] = r.cfg.Now()
	}
	r.mu.Unlock()
	return loc.node, ok
}

// unprovenAnswer counts node n's answer that dest is attached to it without a valid proof, and
// warns about it, at most once per unprovenWarnEvery for each node (a lying node answers every
// query), saying how many were not logged meanwhile.
func (r *Router) unprovenAnswer(n peer.ID, dest identity.Agent, pr *Presence, why PresenceCheck) {
	r.unproven[why].Add(1)
	now := r.cfg.Now()
	r.mu.Lock()
	w := r.warned[n]
	if w != nil && now.Sub(w.at) < unprovenWarnEvery {
		w.suppressed++
		r.mu.Unlock()
		return
	}
	if w == nil {
		if len(r.warned) >= maxWarned {
			clear(r.warned)
		}
		w = &warnState{}
		r.warned[n] = w
	}
	suppressed := w.suppressed
	w.at, w.suppressed = now, 0
	r.mu.Unlock()
	args := []any{"node", n, "agent", dest.Name, "agent_id", dest.ID.Peer(), "why", why.String(), "suppressed", suppressed}
	if pr != nil {
		args = append(args, "proof_time", pr.Timestamp)
	}
	r.cfg.Logger.Warn("agentproto: ignored a locate answer without a valid proof that the agent is attached", args...)
}

func (r *Router) forget(agent, n peer.ID) {
	r.mu.Lock()
	if r.where[agent].node == n {
		delete(r.where, agent)
	}
	r.mu.Unlock()
}

// viewNodes is the default RouterConfig.Nodes: the admitted nodes of the current View.
func (r *Router) viewNodes() []peer.AddrInfo {
	v := r.srv.views.Current()
	if v == nil {
		return nil
	}
	var out []peer.AddrInfo
	for _, p := range v.Nodes() {
		out = append(out, peer.AddrInfo{ID: p})
	}
	return out
}
