package agentproto

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/enforce"
)

// Config configures a Server.
type Config struct {
	// ReverifyInterval is how often each attached agent is challenged (auth.reverify_interval).
	// Default 30 s.
	ReverifyInterval time.Duration
	// ChallengeTimeout bounds one challenge: open the stream, send, receive the proof. Default 5 s.
	ChallengeTimeout time.Duration
	// RequestTimeout bounds reading an attach request and writing the answer. Default 5 s.
	RequestTimeout time.Duration
	// Now is the clock for expiry and challenge timestamps. Default time.Now.
	Now func() time.Time
	// Rand is the source of challenge nonces. Default crypto/rand.Reader.
	Rand io.Reader
	// Disconnect cuts an agent off after a failed challenge or an expiry (wire it to
	// enforce.Enforcer.Disconnect). Default: close every connection to the peer. Must not block
	// for long; called on the session's goroutine.
	Disconnect func(p peer.ID, cause error)
	// Logger receives one line per attach refusal and per cut-off. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults above (Disconnect nil: NewServer fills it in).
func DefaultConfig() Config {
	return Config{ReverifyInterval: 30 * time.Second, ChallengeTimeout: 5 * time.Second,
		RequestTimeout: 5 * time.Second, Now: time.Now, Rand: rand.Reader, Logger: slog.Default()}
}

// Validate checks every duration is positive and the clock, rand and logger are set.
func (c Config) Validate() error {
	switch {
	case c.ReverifyInterval <= 0:
		return fmt.Errorf("agentproto: reverify_interval: must be > 0, got %s: %w", c.ReverifyInterval, ErrInvalidConfig)
	case c.ChallengeTimeout <= 0:
		return fmt.Errorf("agentproto: challenge_timeout: must be > 0, got %s: %w", c.ChallengeTimeout, ErrInvalidConfig)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("agentproto: request_timeout: must be > 0, got %s: %w", c.RequestTimeout, ErrInvalidConfig)
	case c.Now == nil || c.Rand == nil || c.Logger == nil:
		return fmt.Errorf("agentproto: now, rand and logger must be set: %w", ErrInvalidConfig)
	}
	return nil
}

// Stats counts the server's outcomes.
type Stats struct {
	Attached, Refused, ReverifyOK, ReverifyFailed uint64
}

// Server answers attach requests from the current registry View and challenges every attached
// agent each ReverifyInterval, cutting off one that fails, times out or has expired.
type Server struct {
	h      host.Host
	views  *enforce.Views
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	notif  *network.NotifyBundle

	mu       sync.Mutex
	closed   bool
	sessions map[peer.ID]*agentSession // one reverify goroutine each

	attached, refused, ok, failed atomic.Uint64
}

// agentSession is the server's state of one attached agent.
type agentSession struct {
	cancel context.CancelFunc // stops its reverify goroutine
	first  chan struct{}      // closed once its first challenge has ended, passed or not
	once   sync.Once          // closes first
	// answered is closed once the attach answer was written: the first challenge waits for it,
	// so an agent that will fail it still learns that it was attached before it is cut off.
	answered     chan struct{}
	answeredOnce sync.Once
	proof        *Presence // its latest passed challenge (under Server.mu); nil before the first
}

func (as *agentSession) firstDone() { as.once.Do(func() { close(as.first) }) }

func (as *agentSession) answer() { as.answeredOnce.Do(func() { close(as.answered) }) }

// NewServer registers the attach handler on h and starts serving.
func NewServer(h host.Host, views *enforce.Views, cfg Config) (*Server, error) {
	if h == nil || views == nil {
		return nil, fmt.Errorf("agentproto: host and views must be set: %w", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Disconnect == nil {
		cfg.Disconnect = func(p peer.ID, _ error) { _ = h.Network().ClosePeer(p) }
	}
	s := &Server{h: h, views: views, cfg: cfg, sessions: map[peer.ID]*agentSession{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.notif = &network.NotifyBundle{DisconnectedF: func(n network.Network, c network.Conn) {
		if p := c.RemotePeer(); n.Connectedness(p) != network.Connected {
			s.endSession(p)
		}
	}}
	h.Network().Notify(s.notif)
	h.SetStreamHandler(AttachProtocol, s.handleAttach)
	return s, nil
}

// Close removes the handler and stops every session. Idempotent; connections stay open.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.h.RemoveStreamHandler(AttachProtocol)
		s.h.Network().StopNotify(s.notif)
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
	})
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{Attached: s.attached.Load(), Refused: s.refused.Load(), ReverifyOK: s.ok.Load(),
		ReverifyFailed: s.failed.Load()}
}

// Sessions is the number of attached agents being re-verified.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Presence returns attached agent p's latest passed challenge: the proof this node gives other
// nodes that p holds a session with it. False before the session's first challenge has passed
// (it is sent right after the attach) and once the session has ended.
func (s *Server) Presence(p peer.ID) (Presence, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if as := s.sessions[p]; as != nil && as.proof != nil {
		return *as.proof, true
	}
	return Presence{}, false
}

// awaitPresence is Presence, but for a session whose first challenge is still running it waits
// for that challenge's outcome (bounded by ChallengeTimeout) or for ctx to end.
func (s *Server) awaitPresence(ctx context.Context, p peer.ID) (Presence, bool) {
	s.mu.Lock()
	as := s.sessions[p]
	s.mu.Unlock()
	if as == nil {
		return Presence{}, false
	}
	select {
	case <-as.first:
	case <-ctx.Done():
		return Presence{}, false
	}
	return s.Presence(p)
}

// lookup answers an attach for p from the current View.
func (s *Server) lookup(p peer.ID, now time.Time) (Message, error) {
	v := s.views.Current()
	if v == nil {
		return &Refusal{Code: CodeUnavailable, Reason: "the node has no registry view yet"}, ErrUnavailable
	}
	e, ok := v.Lookup(p)
	if !ok {
		return &Refusal{Code: CodeUnknown, Reason: "this key is not a registered agent"}, ErrUnknownAgent
	}
	if e.Role != identity.RoleAgent {
		return &Refusal{Code: CodeNotAgent, Reason: "this key belongs to a " + e.Role.String()}, ErrNotAgent
	}
	a, _ := v.Agent(p)
	switch e.StatusAt(now.UnixNano()) {
	case identity.StatusActive:
		return &Registration{Name: a.Name, SPIFFE: a.SPIFFE, Labels: a.Labels, Capabilities: a.Capabilities,
			Status: identity.StatusActive, ExpiresAt: a.ExpiresAt, ReverifyInterval: s.cfg.ReverifyInterval}, nil
	case identity.StatusQuarantined:
		return &Refusal{Code: CodeQuarantined, Reason: a.Reason}, ErrQuarantined
	case identity.StatusExpired:
		return &Refusal{Code: CodeExpired, Reason: "registration expired at " + a.ExpiresAt.Format(time.RFC3339)}, ErrExpired
	}
	return &Refusal{Code: CodeRevoked, Reason: a.Reason}, ErrRevoked
}

func (s *Server) handleAttach(st network.Stream) {
	defer st.Reset() // no-op after a clean Close
	p := st.Conn().RemotePeer()
	_ = st.SetDeadline(time.Now().Add(s.cfg.RequestTimeout))
	var answer Message
	var why error
	if _, err := ReadMessage(st); err != nil {
		answer, why = &Refusal{Code: CodeBadRequest, Reason: "malformed attach request"}, err
	} else {
		answer, why = s.lookup(p, s.cfg.Now())
	}
	if why != nil {
		s.refused.Add(1)
		s.cfg.Logger.Info("agentproto: attach refused", "peer", p, "err", why)
	} else {
		// Before the answer, so the session exists when the agent learns it is attached.
		s.attached.Add(1)
		defer s.startSession(p)()
	}
	if err := WriteMessage(st, answer); err != nil {
		return
	}
	_ = st.Close()
}

// startSession starts the session of p and its challenges. Call the function it returns once
// the attach answer is written (or could not be): the first challenge waits for it.
func (s *Server) startSession(p peer.ID) (answered func()) {
	s.mu.Lock()
	if _, ok := s.sessions[p]; ok || s.closed {
		s.mu.Unlock()
		return func() {}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	as := &agentSession{cancel: cancel, first: make(chan struct{}), answered: make(chan struct{})}
	s.sessions[p] = as
	s.wg.Add(1)
	s.mu.Unlock()
	go s.reverifyLoop(ctx, p, as)
	// The agent may have gone between the attach and now, before the notifiee knew of the
	// session. Checked outside s.mu: the swarm may call the notifiee holding its own locks.
	if s.h.Network().Connectedness(p) != network.Connected {
		s.endSession(p)
	}
	return as.answer
}

func (s *Server) endSession(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if as, ok := s.sessions[p]; ok {
		as.cancel() // its goroutine closes as.first on the way out
		delete(s.sessions, p)
	}
}

// reverifyLoop challenges p right after the attach, so this node can prove the session to other
// nodes at once (Presence), then every ReverifyInterval, keeping the latest proof in as.
func (s *Server) reverifyLoop(ctx context.Context, p peer.ID, as *agentSession) {
	defer s.wg.Done()
	defer as.firstDone()
	select { // the attach answer first (bounded: the attach stream's own deadline)
	case <-as.answered:
	case <-ctx.Done():
		return
	case <-time.After(s.cfg.RequestTimeout):
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pr, err := s.challenge(ctx, p)
		if ctx.Err() != nil {
			return // the session ended (disconnect or Close) during the challenge
		}
		if err != nil && !errors.Is(err, ErrBadSignature) && s.h.Network().Connectedness(p) != network.Connected {
			// The agent left before answering (an attach right before a disconnect): its
			// session is over, and leaving is no failed proof. A bad signature always counts.
			s.endSession(p)
			return
		}
		if err != nil {
			s.failed.Add(1)
			s.endSession(p)
			s.cfg.Logger.Info("agentproto: re-verification failed, cutting the agent off", "peer", p, "err", err)
			s.cfg.Disconnect(p, err)
			return
		}
		s.ok.Add(1)
		s.mu.Lock()
		if s.sessions[p] == as {
			as.proof = &pr
		}
		s.mu.Unlock()
		as.firstDone()
		t.Reset(s.cfg.ReverifyInterval)
	}
}

// Reverify challenges agent p once over its existing connection: the registration must still be
// active and unexpired, and the proof must verify under the registered key. It does not cut the
// agent off itself, nor replace the proof the session keeps (Presence).
func (s *Server) Reverify(ctx context.Context, p peer.ID) error {
	_, err := s.challenge(ctx, p)
	return err
}

// challenge is Reverify, returning the passed challenge as a Presence.
func (s *Server) challenge(ctx context.Context, p peer.ID) (Presence, error) {
	now := s.cfg.Now()
	if _, why := s.lookup(p, now); why != nil {
		return Presence{}, fmt.Errorf("agentproto: reverify %s: %w", p, why)
	}
	a, _ := s.views.Current().Agent(p)
	ch := &Challenge{Timestamp: now, Node: s.h.ID()}
	if _, err := io.ReadFull(s.cfg.Rand, ch.Nonce[:]); err != nil {
		return Presence{}, fmt.Errorf("agentproto: reverify: nonce: %w: %v", ErrChallengeFailed, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ChallengeTimeout)
	defer cancel()
	st, err := s.h.NewStream(network.WithNoDial(ctx, "reverify"), p, ReverifyProtocol)
	if err != nil {
		return Presence{}, fmt.Errorf("agentproto: reverify %s: %w: %v", p, ErrChallengeFailed, err)
	}
	defer st.Reset()
	_ = st.SetDeadline(time.Now().Add(s.cfg.ChallengeTimeout))
	if err := WriteMessage(st, ch); err != nil {
		return Presence{}, fmt.Errorf("agentproto: reverify %s: %w: %v", p, ErrChallengeFailed, err)
	}
	_ = st.CloseWrite()
	resp, err := ReadMessage(st)
	if err != nil {
		return Presence{}, fmt.Errorf("agentproto: reverify %s: %w: %w", p, ErrChallengeFailed, err)
	}
	proof, ok := resp.(*Proof)
	if !ok {
		return Presence{}, fmt.Errorf("agentproto: reverify %s: answer of type %d: %w", p, resp.msgType(), ErrChallengeFailed)
	}
	if !a.Key.Verify(ReverifyBytes(ch.Nonce, ch.Node, p, ch.Timestamp), proof.Signature[:]) {
		return Presence{}, fmt.Errorf("agentproto: reverify %s: %w", p, ErrBadSignature)
	}
	return Presence{Nonce: ch.Nonce, Timestamp: ch.Timestamp, Signature: proof.Signature}, nil
}
