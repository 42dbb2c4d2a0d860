package agentproto

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/enforce"
)

func TestAttachOK(t *testing.T) {
	f := newFixture(t)
	key := f.register("alpha", time.Hour)
	nh, srv := newServer(t, f, func(c *Config) { c.ReverifyInterval = time.Hour })
	ah := newHost(t, key, nil, false)
	ServeReverify(ah, key)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := Attach(ctx, ah, info(nh))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := f.views.Current().Agent(ah.ID())
	if reg.Name != "alpha" || reg.SPIFFE.String() != "spiffe://test.vigil/agent/alpha" ||
		reg.Labels["role"] != "demo" || len(reg.Capabilities) != 2 || reg.Status != identity.StatusActive ||
		!reg.ExpiresAt.Equal(want.ExpiresAt) || reg.ReverifyInterval != time.Hour {
		t.Fatalf("registration = %+v", reg)
	}
	if srv.Stats().Attached != 1 || srv.Sessions() != 1 {
		t.Fatalf("stats %+v, sessions %d", srv.Stats(), srv.Sessions())
	}
	// The first challenge comes right after the attach, not after the hour: the node holds the
	// agent's proof of presence at once.
	waitFor(t, "the first challenge", 5*time.Second, func() bool { return srv.Stats().ReverifyOK == 1 })
	pr, ok := srv.Presence(ah.ID())
	if !ok || CheckPresence(&pr, key.Public(), nh.ID(), ah.ID(), time.Now(), time.Minute) != PresenceOK {
		t.Fatalf("presence %+v %v", pr, ok)
	}
	// The session ends with the connection, and the proof with it.
	_ = ah.Network().ClosePeer(nh.ID())
	waitFor(t, "the session to end", 5*time.Second, func() bool { return srv.Sessions() == 0 })
	if _, ok := srv.Presence(ah.ID()); ok {
		t.Fatal("the proof outlived the session")
	}
}

// TestAttachRefused exercises the server's own checks: the node host has no gater.
func TestAttachRefused(t *testing.T) {
	f := newFixture(t)
	revoked := f.register("revoked", time.Hour)
	f.apply(&identity.RevokeAgent{Name: "revoked", Reason: "stolen key"})
	quar := f.register("quar", time.Hour)
	f.apply(&identity.QuarantineAgent{Name: "quar", Reason: "anomaly"})
	expired := f.register("expired", 20*time.Millisecond)
	time.Sleep(30 * time.Millisecond)
	nh, srv := newServer(t, f, nil)
	for _, tc := range []struct {
		name string
		key  identity.PrivateKey
		want error
	}{
		{"revoked", revoked, ErrRevoked},
		{"quarantined", quar, ErrQuarantined},
		{"expired", expired, ErrExpired},
		{"unknown", mustKey(t), ErrUnknownAgent},
		{"operator", f.op, ErrNotAgent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ah := newHost(t, tc.key, nil, false)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Attach(ctx, ah, info(nh))
			if !errors.Is(err, ErrRefused) || !errors.Is(err, tc.want) {
				t.Fatalf("Attach = %v, want ErrRefused and %v", err, tc.want)
			}
		})
	}
	if srv.Sessions() != 0 || srv.Stats().Attached != 0 || srv.Stats().Refused != 5 {
		t.Fatalf("sessions %d, stats %+v", srv.Sessions(), srv.Stats())
	}
}

// TestAttachBehindGater: with the real enforcement gater a revoked agent never reaches the
// attach handler.
func TestAttachBehindGater(t *testing.T) {
	f := newFixture(t)
	key := f.register("revoked", time.Hour)
	f.apply(&identity.RevokeAgent{Name: "revoked", Reason: "stolen key"})
	g, err := enforce.NewGater(f.views, enforce.DefaultGaterConfig())
	if err != nil {
		t.Fatal(err)
	}
	nh := newHost(t, f.node, g, true)
	srv, err := NewServer(nh, f.views, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ah := newHost(t, key, nil, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Attach(ctx, ah, info(nh)); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Attach = %v, want ErrUnreachable", err)
	}
	if srv.Stats().Refused != 0 || g.Stats().Secured[enforce.ReasonRevoked] == 0 {
		t.Fatalf("server stats %+v, gater revoked count %d: the gater should have refused first",
			srv.Stats(), g.Stats().Secured[enforce.ReasonRevoked])
	}
}

func TestReverify(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ttl      time.Duration
		wrongKey bool
		wantCut  error // nil: stays connected
	}{
		{"success", time.Hour, false, nil},
		{"wrong key", time.Hour, true, ErrBadSignature},
		{"expiry", 300 * time.Millisecond, false, ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			key := f.register("alpha", tc.ttl)
			cut := make(chan error, 1)
			var nh host.Host
			nh, srv := newServer(t, f, func(c *Config) {
				c.ReverifyInterval = 50 * time.Millisecond
				c.ChallengeTimeout = 2 * time.Second
				c.Disconnect = func(p peer.ID, cause error) { // record, then close as the default does
					cut <- cause
					_ = nh.Network().ClosePeer(p)
				}
			})
			ah := newHost(t, key, nil, false)
			signer := key
			if tc.wrongKey {
				signer = mustKey(t)
			}
			ServeReverify(ah, signer)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := Attach(ctx, ah, info(nh)); err != nil && tc.wantCut == nil {
				t.Fatal(err)
			} else if err != nil {
				// The first challenge follows the written answer by one round trip; on a
				// loaded machine the cut it causes can come before Attach has read the answer.
				t.Logf("attach of an agent that fails its challenge: %v", err)
			}
			if tc.wantCut == nil {
				waitFor(t, "3 successful challenges", 10*time.Second, func() bool { return srv.Stats().ReverifyOK >= 3 })
				if nh.Network().Connectedness(ah.ID()) != network.Connected || srv.Stats().ReverifyFailed != 0 {
					t.Fatalf("agent cut off: stats %+v", srv.Stats())
				}
				return
			}
			select {
			case cause := <-cut:
				if !errors.Is(cause, tc.wantCut) {
					t.Fatalf("cut off with %v, want %v", cause, tc.wantCut)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the agent was never cut off")
			}
			waitFor(t, "the connection to close", 5*time.Second, func() bool {
				return nh.Network().Connectedness(ah.ID()) != network.Connected
			})
			if srv.Sessions() != 0 || srv.Stats().ReverifyFailed != 1 {
				t.Fatalf("sessions %d, stats %+v", srv.Sessions(), srv.Stats())
			}
		})
	}
}

// TestServeReverifyRefusesRelayedChallenge: an agent signs only challenges naming the node it is
// talking to, and not dated more than MaxChallengeAhead ahead (a node could hoard such proofs of
// presence to claim the agent after it left).
func TestServeReverifyRefusesRelayedChallenge(t *testing.T) {
	f := newFixture(t)
	key := f.register("alpha", time.Hour)
	nh := newHost(t, f.node, nil, true)
	ah := newHost(t, key, nil, false)
	ServeReverify(ah, key)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ah.Connect(ctx, info(nh)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		node peer.ID
		at   time.Duration // from now
		ok   bool
	}{
		{"names this node", nh.ID(), 0, true},
		{"names another node", mustKey(t).ID().Peer(), 0, false},
		{"a minute ahead", nh.ID(), time.Minute, true},
		{"long ago", nh.ID(), -time.Hour, true},
		{"dated too far ahead", nh.ID(), MaxChallengeAhead + time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := nh.NewStream(ctx, ah.ID(), ReverifyProtocol)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Reset()
			ch := &Challenge{Timestamp: time.Now().Add(tc.at), Node: tc.node}
			ch.Nonce[0] = 1
			if err := WriteMessage(st, ch); err != nil {
				t.Fatal(err)
			}
			m, err := ReadMessage(st)
			if !tc.ok {
				if err == nil {
					t.Fatalf("agent answered a relayed challenge: %+v", m)
				}
				return
			}
			p, ok := m.(*Proof)
			if err != nil || !ok || !key.Public().Verify(ReverifyBytes(ch.Nonce, tc.node, ah.ID(), ch.Timestamp), p.Signature[:]) {
				t.Fatalf("proof %+v, %v: does not verify", m, err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"zero interval", func(c *Config) { c.ReverifyInterval = 0 }},
		{"zero challenge timeout", func(c *Config) { c.ChallengeTimeout = 0 }},
		{"zero request timeout", func(c *Config) { c.RequestTimeout = 0 }},
		{"nil rand", func(c *Config) { c.Rand = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestServerCloseEndsSessions: Close stops every re-verification goroutine.
func TestServerCloseEndsSessions(t *testing.T) {
	f := newFixture(t)
	key := f.register("alpha", time.Hour)
	nh, srv := newServer(t, f, func(c *Config) { c.ReverifyInterval = time.Hour })
	ah := newHost(t, key, nil, false)
	ServeReverify(ah, key)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Attach(ctx, ah, info(nh)); err != nil {
		t.Fatal(err)
	}
	// The goroutine starts once the session is registered, which can be after Attach returns.
	waitFor(t, "the re-verification goroutine", 5*time.Second, func() bool { return stacksContain("(*Server).reverifyLoop") })
	_ = srv.Close()
	_ = srv.Close()
	if stacksContain("(*Server).reverifyLoop") {
		t.Fatal("a re-verification goroutine survived Close")
	}
}

func stacksContain(fn string) bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), fn)
}
