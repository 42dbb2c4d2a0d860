package enforce

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/vigil-mesh/vigil/identity"
)

const holdProto = "/vigil/test/hold/1"

// openHeldStream opens a stream from h to the node that the node keeps open (it reads until the
// stream dies), and returns a channel that receives the agent-side read error.
func openHeldStream(t *testing.T, agent, node *nodeUnderTest) (readErr <-chan error) {
	t.Helper()
	node.h.SetStreamHandler(holdProto, func(s network.Stream) {
		_, _ = s.Write([]byte{1})
		_, _ = io.Copy(io.Discard, s)
		_ = s.Reset()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := agent.h.NewStream(ctx, node.h.ID(), holdProto)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		t.Fatalf("stream read before revocation: %v", err)
	}
	ch := make(chan error, 1)
	go func() {
		_, err := s.Read(b[:])
		ch <- err
	}()
	return ch
}

func waitDisconnected(t *testing.T, n *nodeUnderTest, a *nodeUnderTest, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(n.h.Network().ConnsToPeer(a.h.ID())) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("node still connected to the agent after %s", within)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEnforcerClosesLiveSessions: a connected agent whose status changes is cut off, its live
// connection and open stream included, by the view update itself.
func TestEnforcerClosesLiveSessions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(f *fixture, name string)
		reason Reason
	}{
		{"revoke", func(f *fixture, n string) { f.apply(&identity.RevokeAgent{Name: n, Reason: "compromised"}) }, ReasonRevoked},
		{"quarantine", func(f *fixture, n string) { f.apply(&identity.QuarantineAgent{Name: n, Reason: "anomaly"}) }, ReasonQuarantined},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			key := f.register("victim", time.Hour)
			bystanderKey := f.register("bystander", time.Hour)
			node := newNode(t, f, DefaultGaterConfig())
			agent := &nodeUnderTest{h: newHost(t, key, nil, false)}
			bystander := newHost(t, bystanderKey, nil, false)
			if err := connect(agent.h, node.h); err != nil {
				t.Fatalf("active agent refused: %v", err)
			}
			if err := connect(bystander, node.h); err != nil {
				t.Fatalf("bystander refused: %v", err)
			}
			readErr := openHeldStream(t, agent, node)

			tc.change(f, "victim") // MemSource notifies the enforcer's subscription; no Refresh
			waitDisconnected(t, node, agent, 5*time.Second)
			select {
			case err := <-readErr:
				if err == nil {
					t.Fatal("stream read succeeded after the revocation")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the agent's open stream survived the revocation")
			}
			if len(node.h.Network().ConnsToPeer(bystander.ID())) == 0 {
				t.Fatal("the bystander agent was disconnected too")
			}
			es := node.waitEnforcements(t, 1)
			if len(es) != 1 || es[0].Peer != agent.h.ID() || es[0].Reason != tc.reason || es[0].Name != "victim" {
				t.Fatalf("enforcements = %+v, want one %s of the victim", es, tc.reason)
			}
			t.Logf("%s enforced %s after the command's apply time", tc.name, es[0].Latency)
			if err := connect(agent.h, node.h); err == nil && ping(agent.h, node.h.ID()) == nil {
				t.Fatal("the agent reconnected after the change")
			}
		})
	}
}

// TestEnforcerExpiryWatcher: an agent whose registration expires while connected is closed by
// the expiry timer, with no registry change.
func TestEnforcerExpiryWatcher(t *testing.T) {
	f := newFixture(t)
	key := f.register("short", 400*time.Millisecond)
	node := newNode(t, f, DefaultGaterConfig())
	agent := &nodeUnderTest{h: newHost(t, key, nil, false)}
	if err := connect(agent.h, node.h); err != nil {
		t.Fatalf("agent refused before expiry: %v", err)
	}
	readErr := openHeldStream(t, agent, node)
	waitDisconnected(t, node, agent, 5*time.Second)
	if err := <-readErr; err == nil {
		t.Fatal("stream read succeeded after expiry")
	}
	es := node.waitEnforcements(t, 1)
	if len(es) != 1 || es[0].Reason != ReasonExpired {
		t.Fatalf("enforcements = %+v, want one expiry", es)
	}
	t.Logf("expiry enforced %s after ExpiresAt", es[0].Latency)
}

func TestEnforcerDisconnectAndClose(t *testing.T) {
	f := newFixture(t)
	key := f.register("a", time.Hour)
	node := newNode(t, f, DefaultGaterConfig())
	agent := &nodeUnderTest{h: newHost(t, key, nil, false)}
	if err := connect(agent.h, node.h); err != nil {
		t.Fatal(err)
	}
	node.e.Disconnect(agent.h.ID(), ReasonRevoked)
	if len(node.h.Network().ConnsToPeer(agent.h.ID())) != 0 || node.e.Closed() != 1 {
		t.Fatal("Disconnect left the connection open")
	}
	if err := node.e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := node.e.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := node.e.Refresh(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Refresh after Close = %v, want ErrClosed", err)
	}
	// A change after Close must not reach the closed enforcer (the subscription is gone).
	f.apply(&identity.RevokeAgent{Name: "a", Reason: "after close"})
}

func TestNewEnforcerConfig(t *testing.T) {
	f := newFixture(t)
	g, _ := NewGater(NewViews(), DefaultGaterConfig())
	h := newHost(t, f.node, g, false)
	cfg := DefaultConfig()
	cfg.MinTimer = 0
	if _, err := NewEnforcer(h, g, f.src, cfg); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("MinTimer 0: %v, want ErrInvalidConfig", err)
	}
	if _, err := NewEnforcer(nil, g, f.src, DefaultConfig()); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil host: %v, want ErrInvalidConfig", err)
	}
}

// TestEnforcerCloseLeavesNoGoroutine: after Close, the enforcement goroutine is gone.
func TestEnforcerCloseLeavesNoGoroutine(t *testing.T) {
	f := newFixture(t)
	node := newNode(t, f, DefaultGaterConfig())
	// Control: the goroutine is there (it may take a moment to be scheduled).
	deadline := time.Now().Add(5 * time.Second)
	for !stacksContain("(*Enforcer).loop") {
		if time.Now().After(deadline) {
			t.Fatal("control: the enforcement goroutine is not running")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = node.e.Close()
	if stacksContain("(*Enforcer).loop") {
		t.Fatal("the enforcement goroutine survived Close")
	}
}

// stacksContain reports whether any goroutine's stack names fn. The buffer grows until the whole
// dump fits: other tests of the package leave many libp2p goroutines behind.
func stacksContain(fn string) bool {
	for n := 1 << 20; ; n *= 2 {
		buf := make([]byte, n)
		if m := runtime.Stack(buf, true); m < n {
			return strings.Contains(string(buf[:m]), fn)
		}
	}
}
