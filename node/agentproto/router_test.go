package agentproto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// liarNode is a compromised node: an admitted node key on a real libp2p host that speaks the
// real locate and relay protocols, answers every locate query as answer says, and accepts (and
// counts) every relay it attracts, as if it delivered it.
type liarNode struct {
	h      host.Host
	answer atomic.Pointer[func(agent peer.ID) Message]
	relays atomic.Int32
}

func newLiarNode(tb testing.TB, key identity.PrivateKey) *liarNode {
	l := &liarNode{h: newHost(tb, key, nil, true)}
	l.h.SetStreamHandler(LocateProtocol, func(s network.Stream) {
		ServeLoop(s, time.Minute, func(m Message) Message { return (*l.answer.Load())(m.(*Locate).Agent) })
	})
	l.h.SetStreamHandler(RelayProtocol, func(s network.Stream) {
		ServeLoop(s, time.Minute, func(m Message) Message { l.relays.Add(1); return &Receipt{ID: m.(*Relay).ID} })
	})
	return l
}

// testAgent is an agent attached through the session protocol, answering challenges with its
// key and acknowledging deliveries (it counts them).
type testAgent struct {
	key       identity.PrivateKey
	h         host.Host
	delivered atomic.Int32
}

// attachAgent attaches key to the node on nh and waits until that node's server holds the
// agent's proof of presence.
func attachAgent(tb testing.TB, key identity.PrivateKey, nh host.Host, srv *Server) *testAgent {
	tb.Helper()
	a := openSession(tb, key, nh, true)
	waitFor(tb, "the node to hold the agent's proof", 10*time.Second, func() bool { _, ok := srv.Presence(key.ID().Peer()); return ok })
	return a
}

// openSession attaches key to the node on nh with the session protocol; with prove, the agent
// answers the node's challenges.
func openSession(tb testing.TB, key identity.PrivateKey, nh host.Host, prove bool) *testAgent {
	tb.Helper()
	a := &testAgent{key: key, h: newHost(tb, key, nil, false)}
	if prove {
		ServeReverify(a.h, key)
	}
	a.h.SetStreamHandler(DeliverProtocol, func(s network.Stream) {
		ServeLoop(s, time.Minute, func(Message) Message { a.delivered.Add(1); return &Ack{} })
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.h.Connect(ctx, info(nh)); err != nil {
		tb.Fatal(err)
	}
	st, err := a.h.NewStream(ctx, nh.ID(), SessionProtocol)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Reset() })
	if err := WriteEnvelope(st, &AttachRequest{Version: attachVersion}); err != nil {
		tb.Fatal(err)
	}
	switch m, err := ReadEnvelope(st); {
	case err != nil && !prove:
		// An agent that answers no challenge fails the first one, one round trip after its
		// registration was written; on a loaded machine the cut can come before this read.
		tb.Logf("session of an agent that does not prove its key: %v", err)
	case err != nil:
		tb.Fatal(err)
	default:
		if _, ok := m.(*Registration); !ok {
			tb.Fatalf("attach answered %#v", m)
		}
	}
	return a
}

// newRouterNode starts a node host with a server and a router over f's views.
func newRouterNode(tb testing.TB, f *fixture, key identity.PrivateKey, mod func(*RouterConfig)) (host.Host, *Server, *Router) {
	tb.Helper()
	h := newHost(tb, key, nil, true)
	cfg := DefaultConfig()
	cfg.Logger = testLogger(tb)
	srv, err := NewServer(h, f.views, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	rc := DefaultRouterConfig()
	rc.Logger = testLogger(tb)
	if mod != nil {
		mod(&rc)
	}
	r, err := NewRouter(srv, rc)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = r.Close() })
	return h, srv, r
}

// countWarnings counts the Warn records with message msg and passes every record on to next.
type countWarnings struct {
	slog.Handler
	msg string
	n   *atomic.Int32
}

func (c countWarnings) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level == slog.LevelWarn && rec.Message == c.msg {
		c.n.Add(1)
	}
	return c.Handler.Handle(ctx, rec)
}

const unprovenWarning = "agentproto: ignored a locate answer without a valid proof that the agent is attached"

// TestLocateIgnoresUnprovedAnswers: a lying node answers every locate query "attached here"
// with no proof (the format before proofs), with the proof the honest node gives (it asked
// that node itself), with the destination's old proof for the liar, with one dated ahead, and
// with a forged signature. The sender's node relays nothing to it: alone, the liar leaves the
// destination unreachable; next to the honest node, the message reaches the destination there,
// and the location is cached. Each lie is counted by why and warned about at most once a minute
// per node. A fresh proof the agent gave the liar is believed, until it is LocateMaxAge old (the
// cached location too): the residual the threat model states.
func TestLocateIgnoresUnprovedAnswers(t *testing.T) {
	f, keys := newFixtureNodes(t, 3)
	var offset atomic.Int64 // the sender's node's clock runs ahead by this much
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	advance := func(d time.Duration) { offset.Add(int64(d)) }
	var warnings atomic.Int32
	var nodes atomic.Pointer[[]peer.AddrInfo]
	ah, asrv, ar := newRouterNode(t, f, keys[0], func(rc *RouterConfig) {
		rc.Now = now
		rc.Nodes = func() []peer.AddrInfo { return *nodes.Load() }
		rc.Logger = slog.New(countWarnings{Handler: testLogger(t).Handler(), msg: unprovenWarning, n: &warnings})
	})
	bh, bsrv, _ := newRouterNode(t, f, keys[1], nil)
	liar := newLiarNode(t, keys[2])
	liar.h.Peerstore().AddAddrs(bh.ID(), bh.Addrs(), time.Hour)
	maxAge := ar.cfg.LocateMaxAge
	if want := 2*DefaultConfig().ReverifyInterval + DefaultConfig().ChallengeTimeout; maxAge != want {
		t.Fatalf("derived LocateMaxAge %s, want %s", maxAge, want)
	}
	onlyLiar, both, none := []peer.AddrInfo{info(liar.h)}, []peer.AddrInfo{info(liar.h), info(bh)}, []peer.AddrInfo{}

	sender := attachAgent(t, f.registerWith("sender", []string{"ask:*"}), ah, asrv)
	sends := NewPool(sender.h, SendProtocol, true)
	t.Cleanup(sends.Close)
	send := func(to string) Message {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := sends.Call(ctx, ah.ID(), &Send{To: to, Capability: "ask", Body: []byte("secret")})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	unreachable := func(m Message) bool {
		ref, ok := m.(*MsgRefusal)
		return ok && ref.Code == CodeDestinationUnreachable && ref.Hop == HopSenderNode
	}
	// What the liar learns by asking the honest node itself.
	locate := NewPool(liar.h, LocateProtocol, false)
	t.Cleanup(locate.Close)
	locateFromHonest := func(p peer.ID) Message {
		m, err := locate.Call(context.Background(), bh.ID(), &Locate{Agent: p})
		if err != nil {
			return &Located{}
		}
		return m
	}

	for i, tc := range []struct {
		name string
		lie  func(dest identity.PrivateKey) Message
		why  PresenceCheck
	}{
		{"no proof", func(identity.PrivateKey) Message { return &Located{Attached: true} }, PresenceMissing},
		{"the honest node's proof", func(d identity.PrivateKey) Message { return locateFromHonest(d.ID().Peer()) }, PresenceBadSignature},
		{"a stale proof for the liar", func(d identity.PrivateKey) Message {
			return &Located{Attached: true, Proof: signPresence(d, liar.h.ID(), now().Add(-maxAge-time.Second))}
		}, PresenceStale},
		{"a proof dated ahead", func(d identity.PrivateKey) Message {
			return &Located{Attached: true, Proof: signPresence(d, liar.h.ID(), now().Add(PresenceSkew+time.Minute))}
		}, PresenceFuture},
		{"a forged signature", func(identity.PrivateKey) Message {
			return &Located{Attached: true, Proof: signPresence(mustKey(t), liar.h.ID(), now())}
		}, PresenceBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("dest-%d", i)
			dk := f.registerWith(name, nil)
			dest := attachAgent(t, dk, bh, bsrv)
			lie := func(p peer.ID) Message {
				if p != dk.ID().Peer() {
					return &Located{}
				}
				return tc.lie(dk)
			}
			liar.answer.Store(&lie)
			before := ar.Stats().LocateUnproven[tc.why]

			// The liar alone: nothing proves the destination is anywhere.
			nodes.Store(&onlyLiar)
			if m := send(name); !unreachable(m) {
				t.Fatalf("with only the liar: answer %#v, want destination_unreachable at the sender's node", m)
			}
			if got := ar.Stats().LocateUnproven[tc.why]; got != before+1 {
				t.Fatalf("%s answers counted %d, want %d", tc.why, got, before+1)
			}

			// Next to the honest node (past the missing cache): the message reaches the
			// destination there.
			advance(2 * missingTTL)
			nodes.Store(&both)
			if m, ok := send(name).(*Receipt); !ok {
				t.Fatalf("with the honest node: answer %#v, want a receipt", m)
			}
			// Cached: the next message needs no query (there is no node to ask).
			nodes.Store(&none)
			if m, ok := send(name).(*Receipt); !ok {
				t.Fatalf("cached: answer %#v, want a receipt", m)
			}
			if dest.delivered.Load() != 2 || liar.relays.Load() != 0 {
				t.Fatalf("destination got %d messages, the liar %d", dest.delivered.Load(), liar.relays.Load())
			}
		})
	}
	// One warning for the first lie; the rest came within the same minute.
	if n := warnings.Load(); n != 1 {
		t.Fatalf("%d warnings, want 1 (rate-limited per node)", n)
	}

	// The residual: the agent did answer a recent challenge from the liar (it was attached
	// there a minute ago). That proof is believed, and the location cached, until the proof is
	// LocateMaxAge old; then the same answer is stale.
	dk := f.registerWith("dest-moved", nil)
	fresh := signPresence(dk, liar.h.ID(), now())
	lie := func(peer.ID) Message { return &Located{Attached: true, Proof: fresh} }
	liar.answer.Store(&lie)
	nodes.Store(&onlyLiar)
	advance(time.Minute)
	if m, ok := send("dest-moved").(*Receipt); !ok || liar.relays.Load() != 1 {
		t.Fatalf("a fresh proof for the liar: %#v, relays %d", m, liar.relays.Load())
	}
	advance(maxAge - time.Minute + time.Second)
	if m := send("dest-moved"); !unreachable(m) || liar.relays.Load() != 1 {
		t.Fatalf("the same proof past LocateMaxAge: %#v, relays %d", m, liar.relays.Load())
	}
	if n := warnings.Load(); n != 2 {
		t.Fatalf("%d warnings, want 2 (over a minute apart)", n)
	}
	st := ar.Stats()
	if st.LocateUnproven[PresenceOK] != 0 || st.LocateUnproven[PresenceStale] < 2 || st.LocateUnproven[PresenceMissing] < 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRouterConfigLocateMaxAge: LocateMaxAge may not be negative, nor shorter than a node waits
// between two challenges (honest proofs would go stale); 0 derives it from the server.
func TestRouterConfigLocateMaxAge(t *testing.T) {
	rc := DefaultRouterConfig()
	rc.LocateMaxAge = -time.Second
	if err := rc.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative: %v", err)
	}
	f := newFixture(t)
	_, srv := newServer(t, f, func(c *Config) { c.ReverifyInterval, c.ChallengeTimeout = time.Minute, 5*time.Second })
	rc = DefaultRouterConfig()
	rc.Logger = testLogger(t)
	rc.LocateMaxAge = time.Minute
	if _, err := NewRouter(srv, rc); !errors.Is(err, ErrInvalidConfig) ||
		err.Error() != "agentproto: locate_max_age: 1m0s is shorter than the server's reverify_interval + challenge_timeout (1m5s), so honest nodes' proofs would go stale: invalid config" {
		t.Fatalf("shorter than a challenge period: %v", err)
	}
	for _, tc := range []struct{ set, want time.Duration }{{0, 2*time.Minute + 5*time.Second}, {65 * time.Second, 65 * time.Second}} {
		rc.LocateMaxAge = tc.set
		r, err := NewRouter(srv, rc)
		if err != nil {
			t.Fatal(err)
		}
		if r.cfg.LocateMaxAge != tc.want {
			t.Errorf("LocateMaxAge %s gives %s, want %s", tc.set, r.cfg.LocateMaxAge, tc.want)
		}
		_ = r.Close()
	}
}

// TestLocateAnswersOnlyWithProof: a node says "attached" only for an agent that holds a session
// with it and whose challenge passed, with that proof; a session whose first challenge is still
// running is waited for; without a session, or once it ended, "not attached".
func TestLocateAnswersOnlyWithProof(t *testing.T) {
	f, keys := newFixtureNodes(t, 2)
	bh, bsrv, _ := newRouterNode(t, f, keys[0], nil)
	asker := newHost(t, keys[1], nil, false)
	if err := asker.Connect(context.Background(), info(bh)); err != nil {
		t.Fatal(err)
	}
	pool := NewPool(asker, LocateProtocol, false)
	t.Cleanup(pool.Close)
	ask := func(k identity.PrivateKey) *Located {
		t.Helper()
		m, err := pool.Call(context.Background(), bh.ID(), &Locate{Agent: k.ID().Peer()})
		if err != nil {
			t.Fatal(err)
		}
		return m.(*Located)
	}
	dk := f.registerWith("dest", nil)
	if l := ask(dk); l.Attached {
		t.Fatalf("an agent with no session: %+v", l)
	}
	d := attachAgent(t, dk, bh, bsrv)
	l := ask(dk)
	if !l.Attached || CheckPresence(l.Proof, dk.Public(), bh.ID(), dk.ID().Peer(), time.Now(), time.Minute) != PresenceOK {
		t.Fatalf("attached agent: %+v", l)
	}
	_ = d.h.Network().ClosePeer(bh.ID())
	waitFor(t, "the session to end", 5*time.Second, func() bool { _, ok := bsrv.Presence(dk.ID().Peer()); return !ok })
	if l := ask(dk); l.Attached {
		t.Fatalf("after the session ended: %+v", l)
	}

	// An agent that attaches but does not answer challenges: the attach passes, the query
	// right after it waits for the first challenge, which fails; the node says "not attached"
	// and cuts the agent off.
	sk := f.registerWith("silent", nil)
	openSession(t, sk, bh, false)
	if l := ask(sk); l.Attached {
		t.Fatalf("an agent that never proved its key: %+v", l)
	}
	waitFor(t, "the failed challenge", 10*time.Second, func() bool { return bsrv.Stats().ReverifyFailed == 1 })
}
