package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// newHost starts a real libp2p host with a fresh Ed25519 identity on a loopback ephemeral port.
func newHost(tb testing.TB) host.Host {
	tb.Helper()
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := libp2p.New(
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
	)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

// testLogger logs at level through tb.Log, and goes quiet once the test is over (goroutines of
// libp2p or raft that log late must not panic the test binary).
func testLogger(tb testing.TB, level slog.Level) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// errDenied is what the test authorizers return.
var errDenied = errors.New("denied by test")

// gate is a mutable authorizer: allow everyone except the denied set; it records every call.
type gate struct {
	mu     sync.Mutex
	denied map[peer.ID]bool
	calls  []peer.ID
}

func newGate(deny ...peer.ID) *gate {
	g := &gate{denied: make(map[peer.ID]bool)}
	for _, p := range deny {
		g.denied[p] = true
	}
	return g
}

func (g *gate) Authorize(p peer.ID) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, p)
	if g.denied[p] {
		return fmt.Errorf("peer %s: %w", p, errDenied)
	}
	return nil
}

func (g *gate) set(p peer.ID, deny bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.denied[p] = deny
}

func (g *gate) callsFor(p peer.ID) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.calls {
		if c == p {
			n++
		}
	}
	return n
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
