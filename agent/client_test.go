package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestNotifyDropsOldest: with nobody reading, Notify keeps the newest events.
func TestNotifyDropsOldest(t *testing.T) {
	c := &Client{notify: make(chan ConnEvent, notifyBuffer)}
	for i := range notifyBuffer + 10 {
		c.emit(ConnEvent{State: StateConnecting, Reason: fmt.Sprint(i)})
	}
	if len(c.notify) != notifyBuffer {
		t.Fatalf("buffer holds %d", len(c.notify))
	}
	if e := <-c.notify; e.Reason != "10" {
		t.Fatalf("oldest kept event %q, want 10", e.Reason)
	}
}

// TestConnectUnreachable: with no node listening, Connect keeps retrying and returns the
// context's error; Validate errors come back before any network use.
func TestConnectUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close() // nothing listens there now
	cfg := DefaultConfig()
	cfg.Key = key(t)
	cfg.Nodes = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", addr.Port, key(t).ID())}
	cfg.ReconnectMin, cfg.ReconnectMax = 5*time.Millisecond, 20*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := Connect(ctx, cfg); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect = %v, want the context's deadline", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Connect took %s after its context ended", time.Since(start))
	}
	cfg.Nodes = nil
	if _, err := Connect(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Connect without nodes = %v", err)
	}
}
