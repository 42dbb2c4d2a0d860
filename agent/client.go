package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
)

// MaxBodySize is the largest message body a node accepts (64 KiB).
const MaxBodySize = agentproto.MaxBodySize

const (
	attachTimeout  = 10 * time.Second
	handlerTimeout = 10 * time.Second
	notifyBuffer   = 32
	// minStableSession: a session shorter than this is followed by a backoff wait, not an
	// immediate retry, so a node that keeps dropping the agent is not hammered.
	minStableSession = time.Second
)

// Client is an agent attached to a node. Its methods are safe for concurrent use.
type Client struct {
	cfg    Config
	nodes  []peer.AddrInfo
	h      host.Host
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	send   *agentproto.Pool
	report *agentproto.Pool

	mu       sync.Mutex
	reg      Registration
	node     peer.ID        // the node of the current session ("" when none)
	session  network.Stream // the current session stream
	up       chan struct{}  // closed while connected; replaced when the session ends
	state    ConnState
	cutOff   string // the node's reason while cut off
	handlers map[string]Handler
	closed   bool

	notify chan ConnEvent
	nmu    sync.Mutex // serialises the drop-oldest in emit
}

// Connect starts the agent's libp2p host (identity: cfg.Key), attaches to the first node that
// accepts it and returns once attached. It keeps the session alive in the background
// (reconnecting with backoff and jitter, answering re-verification challenges). It fails when
// ctx ends first, or when a node refuses the agent (a *RefusedError: revoked, quarantined,
// expired, unknown key).
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Logger == nil {
		cfg.Logger = DefaultConfig().Logger
	}
	if cfg.Security == "" {
		cfg.Security = "tls"
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nodes, _ := parseNodes(cfg.Nodes)
	sec := libp2p.Security(libp2ptls.ID, libp2ptls.New)
	if cfg.Security == "noise" {
		sec = libp2p.Security(noise.ID, noise.New)
	}
	h, err := libp2p.New(libp2p.Identity(cfg.Key.Libp2p()), libp2p.NoListenAddrs, sec, libp2p.DisableRelay())
	if err != nil {
		return nil, fmt.Errorf("agent: libp2p host: %w", err)
	}
	c := &Client{cfg: cfg, nodes: nodes, h: h, done: make(chan struct{}), up: make(chan struct{}),
		handlers: map[string]Handler{}, notify: make(chan ConnEvent, notifyBuffer),
		send: agentproto.NewPool(h, agentproto.SendProtocol, true), report: agentproto.NewPool(h, agentproto.ReportProtocol, true)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	agentproto.ServeReverify(h, cfg.Key)
	h.SetStreamHandler(agentproto.DeliverProtocol, func(s network.Stream) {
		from := s.Conn().RemotePeer()
		agentproto.ServeLoop(s, 10*time.Minute, func(m agentproto.Message) agentproto.Message { return c.onDeliver(from, m) })
	})
	first := make(chan error, 1)
	go c.run(first)
	select {
	case err := <-first:
		if err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("agent: connect: %w", ctx.Err())
	}
}

// ID is the agent's peer ID.
func (c *Client) ID() identity.ID { return c.cfg.Key.ID() }

// Registration is the registration the node reported at the latest attach.
func (c *Client) Registration() Registration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reg
}

// Notify reports connection state changes. The channel is buffered; when nobody reads it the
// oldest events are dropped. It is never closed.
func (c *Client) Notify() <-chan ConnEvent { return c.notify }

// Handle sets the handler for messages naming capability ("" handles every capability without
// its own handler). A nil h removes the handler. A message with no handler is refused to its
// sender with code no_handler.
func (c *Client) Handle(capability string, h Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h == nil {
		delete(c.handlers, capability)
	} else {
		c.handlers[capability] = h
	}
}

// Close detaches from the node and stops the host. Idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	s := c.session
	c.mu.Unlock()
	c.cancel()
	if s != nil {
		_ = s.Reset()
	}
	c.send.Close()
	c.report.Close()
	err := c.h.Close()
	<-c.done
	c.setState(StateClosed, "", "")
	return err
}

// Send sends body to agent to (a name or a peer ID) naming capability, and returns once the
// destination agent acknowledged it. A refusal anywhere on the path is a *RefusedError naming the
// rule. While disconnected it waits for the session (or ctx); while cut off it fails at once.
func (c *Client) Send(ctx context.Context, to, capability string, body []byte) (Receipt, error) {
	switch {
	case to == "" || len(to) > agentproto.MaxToLen:
		return Receipt{}, fmt.Errorf("agent: send: to %q: must be 1..%d bytes: %w", to, agentproto.MaxToLen, ErrInvalidArgument)
	case len(body) > MaxBodySize:
		return Receipt{}, fmt.Errorf("agent: send: body of %d bytes exceeds %d: %w", len(body), MaxBodySize, ErrInvalidArgument)
	}
	if err := agentproto.ValidateAction(capability); err != nil {
		return Receipt{}, fmt.Errorf("agent: send: %v: %w", err, ErrInvalidArgument)
	}
	start := time.Now()
	node, err := c.waitUp(ctx)
	if err != nil {
		return Receipt{}, err
	}
	resp, err := c.send.Call(ctx, node, &agentproto.Send{To: to, Capability: capability, Body: body})
	if err != nil {
		return Receipt{}, fmt.Errorf("agent: send: %w: %v", ErrNotConnected, err)
	}
	switch r := resp.(type) {
	case *agentproto.Receipt:
		return Receipt{ID: r.ID, Latency: time.Since(start)}, nil
	case *agentproto.MsgRefusal:
		return Receipt{}, refusedError(r)
	}
	return Receipt{}, fmt.Errorf("agent: send: unexpected answer: %w", ErrNotConnected)
}

// Report sends events to the node's telemetry. Each event needs a Kind (≤ 32 bytes); Name ≤ 128
// bytes; at most 16 attributes (keys 1..64 bytes, values ≤ 256 bytes). A zero At means now.
func (c *Client) Report(ctx context.Context, events ...Event) error {
	evs := make([]agentproto.Event, 0, len(events))
	now := time.Now()
	for i, e := range events {
		if err := validateEvent(e); err != nil {
			return fmt.Errorf("agent: report: event %d: %v: %w", i, err, ErrInvalidArgument)
		}
		at := e.At
		if at.IsZero() {
			at = now
		}
		evs = append(evs, agentproto.Event{Kind: e.Kind, Name: e.Name, Value: e.Value, At: at, Attrs: e.Attrs})
	}
	node, err := c.waitUp(ctx)
	if err != nil {
		return err
	}
	for len(evs) > 0 {
		n := min(len(evs), agentproto.MaxEvents)
		resp, err := c.report.Call(ctx, node, &agentproto.Report{Events: evs[:n]})
		if err != nil {
			return fmt.Errorf("agent: report: %w: %v", ErrNotConnected, err)
		}
		if r, ok := resp.(*agentproto.MsgRefusal); ok {
			return refusedError(r)
		}
		evs = evs[n:]
	}
	return nil
}

func validateEvent(e Event) error {
	switch {
	case e.Kind == "" || len(e.Kind) > 32:
		return fmt.Errorf("kind %q must be 1..32 bytes", e.Kind)
	case len(e.Name) > 128:
		return fmt.Errorf("name longer than 128 bytes")
	case len(e.Attrs) > agentproto.MaxEventAttrs:
		return fmt.Errorf("%d attrs, at most %d", len(e.Attrs), agentproto.MaxEventAttrs)
	}
	for k, v := range e.Attrs {
		if k == "" || len(k) > 64 || len(v) > 256 {
			return fmt.Errorf("attr %q: key must be 1..64 bytes, value ≤ 256 bytes", k)
		}
	}
	return nil
}

func refusedError(r *agentproto.MsgRefusal) *RefusedError {
	return &RefusedError{Code: r.Code, Rule: r.Rule, Hop: r.Hop.String(), Reason: r.Reason}
}

// waitUp waits for a session and returns its node.
func (c *Client) waitUp(ctx context.Context) (peer.ID, error) {
	for {
		c.mu.Lock()
		closed, node, up, state, why := c.closed, c.node, c.up, c.state, c.cutOff
		c.mu.Unlock()
		switch {
		case closed:
			return "", ErrClosed
		case state == StateCutOff:
			return "", &RefusedError{Code: agentproto.CodeSenderInactive, Rule: "sender must be active", Hop: "sender-node", Reason: why}
		case node != "":
			return node, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return "", fmt.Errorf("agent: waiting for a node session: %w", ctx.Err())
		case <-c.ctx.Done():
			return "", ErrClosed
		}
	}
}

func (c *Client) onDeliver(from peer.ID, m agentproto.Message) agentproto.Message {
	refuse := func(code, rule, reason string) agentproto.Message {
		if len(reason) > agentproto.MaxReasonLen {
			reason = reason[:agentproto.MaxReasonLen]
		}
		return &agentproto.MsgRefusal{Code: code, Rule: rule, Hop: agentproto.HopReceiver, Reason: reason}
	}
	d, ok := m.(*agentproto.Deliver)
	if !ok {
		return refuse(agentproto.CodeBadMessage, "deliver stream carries Deliver", "unexpected message")
	}
	c.mu.Lock()
	node := c.node
	h := c.handlers[d.Capability]
	if h == nil {
		h = c.handlers[""]
	}
	c.mu.Unlock()
	if from != node {
		return refuse(agentproto.CodeNotNode, "deliveries come from the agent's node", "not the node this agent is attached to")
	}
	if h == nil {
		return refuse(agentproto.CodeNoHandler, "destination handles the capability", "no handler for "+d.Capability)
	}
	fromID, _ := identity.IDFromPeer(d.FromID)
	ctx, cancel := context.WithTimeout(c.ctx, handlerTimeout)
	defer cancel()
	if err := h(ctx, Message{ID: d.ID, From: d.From, FromID: fromID, To: d.To, Capability: d.Capability, Body: d.Body, SentAt: d.SentAt}); err != nil {
		return refuse(agentproto.CodeHandlerError, "destination handler succeeds", err.Error())
	}
	return &agentproto.Ack{}
}

// setState records a state change and emits it on Notify when it differs from the current one.
func (c *Client) setState(s ConnState, node peer.ID, reason string) {
	c.mu.Lock()
	if c.state == s && s != StateConnected {
		c.mu.Unlock()
		return
	}
	if c.state == StateClosed {
		c.mu.Unlock()
		return
	}
	c.state = s
	c.mu.Unlock()
	var id identity.ID
	if node != "" {
		id, _ = identity.IDFromPeer(node)
	}
	c.emit(ConnEvent{State: s, Node: id, Reason: reason, At: time.Now()})
}

func (c *Client) emit(e ConnEvent) {
	c.nmu.Lock()
	defer c.nmu.Unlock()
	for {
		select {
		case c.notify <- e:
			return
		default:
		}
		select {
		case <-c.notify: // drop the oldest
		default:
		}
	}
}

// run keeps a session: attach, wait for it to end, back off, try again. The first outcome
// (attached, or refused) goes to first.
func (c *Client) run(first chan<- error) {
	defer close(c.done)
	delay := c.cfg.ReconnectMin
	idx := 0
	reported := false
	report := func(err error) {
		if !reported {
			reported = true
			first <- err
		}
	}
	for {
		if c.ctx.Err() != nil {
			report(ErrClosed)
			return
		}
		ai := c.nodes[idx%len(c.nodes)]
		c.mu.Lock()
		cut := c.state == StateCutOff
		c.mu.Unlock()
		if !cut {
			c.setState(StateConnecting, "", "")
		}
		reg, st, err := c.attach(ai)
		var refused *RefusedError
		switch {
		case err == nil:
			c.mu.Lock()
			c.reg, c.node, c.session, c.cutOff = reg, ai.ID, st, ""
			close(c.up)
			c.mu.Unlock()
			c.cfg.Logger.Info("agent: attached", "node", ai.ID.String())
			c.setState(StateConnected, ai.ID, "")
			report(nil)
			began := time.Now()
			notice := c.waitSession(st, ai)
			c.mu.Lock()
			c.node, c.session, c.up = "", nil, make(chan struct{})
			if notice != nil {
				c.cutOff = notice.Code + ": " + notice.Reason
			}
			c.mu.Unlock()
			c.send.Forget(ai.ID)
			c.report.Forget(ai.ID)
			if c.ctx.Err() != nil {
				continue
			}
			if notice != nil {
				c.cfg.Logger.Warn("agent: cut off by the node", "node", ai.ID.String(), "code", notice.Code, "reason", notice.Reason)
				c.setState(StateCutOff, ai.ID, notice.Code+": "+notice.Reason)
				delay = c.cfg.ReconnectMax // do not hammer a node that cut us off
			} else {
				c.cfg.Logger.Info("agent: session ended, reconnecting", "node", ai.ID.String())
				if time.Since(began) >= minStableSession {
					delay = c.cfg.ReconnectMin
					continue // a session that had lasted: try the same node again at once
				}
				// A session that ends at once (a node that accepts and drops us) backs off.
			}
		case errors.As(err, &refused):
			c.mu.Lock()
			c.cutOff = refused.Code + ": " + refused.Reason
			c.mu.Unlock()
			c.setState(StateCutOff, ai.ID, c.cutOff)
			report(refused)
			delay = c.cfg.ReconnectMax
			idx++
		default:
			// Until the first attach, every failure is worth a line (a sidecar or agent that
			// cannot reach any node must say so, not wait in silence); later ones are routine.
			level := slog.LevelDebug
			if !reported {
				level = slog.LevelWarn
			}
			c.cfg.Logger.Log(context.Background(), level, "agent: attach failed; retrying", "node", ai.ID.String(), "err", err)
			idx++
			c.mu.Lock()
			cut := c.state == StateCutOff
			c.mu.Unlock()
			if cut {
				delay = c.cfg.ReconnectMax
			}
		}
		// Full jitter on [delay/2, delay].
		wait := delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1))
		t := time.NewTimer(wait)
		select {
		case <-c.ctx.Done():
			t.Stop()
		case <-t.C:
		}
		delay = min(delay*2, c.cfg.ReconnectMax)
	}
}

// attach opens a session with node ai.
func (c *Client) attach(ai peer.AddrInfo) (Registration, network.Stream, error) {
	ctx, cancel := context.WithTimeout(c.ctx, attachTimeout)
	defer cancel()
	if err := c.h.Connect(ctx, ai); err != nil {
		return Registration{}, nil, err
	}
	st, err := c.h.NewStream(ctx, ai.ID, agentproto.SessionProtocol)
	if err != nil {
		return Registration{}, nil, err
	}
	_ = st.SetDeadline(time.Now().Add(attachTimeout))
	if err := agentproto.WriteEnvelope(st, &agentproto.AttachRequest{Version: 1}); err != nil {
		_ = st.Reset()
		return Registration{}, nil, err
	}
	m, err := agentproto.ReadEnvelope(st)
	if err != nil {
		_ = st.Reset()
		return Registration{}, nil, err
	}
	_ = st.SetDeadline(time.Time{})
	switch m := m.(type) {
	case *agentproto.Registration:
		return toRegistration(m, ai.ID), st, nil
	case *agentproto.Refusal:
		_ = st.Reset()
		return Registration{}, nil, &RefusedError{Code: m.Code.String(), Rule: "agent must be registered and active", Hop: "sender-node", Reason: m.Reason}
	}
	_ = st.Reset()
	return Registration{}, nil, fmt.Errorf("agent: attach: unexpected answer")
}

// waitSession blocks until the session stream ends and returns the node's Notice, if it sent one.
// A registration the node sends meanwhile (the registry changed it) replaces the current one.
func (c *Client) waitSession(st network.Stream, node peer.AddrInfo) *agentproto.Notice {
	defer st.Reset()
	for {
		m, err := agentproto.ReadEnvelope(st)
		if err != nil {
			return nil
		}
		switch m := m.(type) {
		case *agentproto.Notice:
			return m
		case *agentproto.Registration:
			reg := toRegistration(m, node.ID)
			c.mu.Lock()
			c.reg = reg
			c.mu.Unlock()
			c.setState(StateConnected, node.ID, "registration updated")
		default:
			return nil
		}
	}
}

func toRegistration(m *agentproto.Registration, node peer.ID) Registration {
	nid, _ := identity.IDFromPeer(node)
	return Registration{Name: m.Name, SpiffeID: m.SPIFFE.String(), Status: m.Status.String(), Labels: m.Labels,
		Capabilities: m.Capabilities, ExpiresAt: m.ExpiresAt, Node: nid}
}
