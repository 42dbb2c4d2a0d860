package agentproto

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// TestPoolReusesStreams: sequential calls share one stream; a pooled stream the other side
// reset is never reused and its request never resent; a no-dial pool does not dial.
func TestPoolReusesStreams(t *testing.T) {
	srv := newHost(t, mustKey(t), nil, true)
	cli := newHost(t, mustKey(t), nil, false)
	var streams atomic.Int32
	var resetNext atomic.Bool
	var handled atomic.Int32
	srv.SetStreamHandler(DeliverProtocol, func(s network.Stream) {
		streams.Add(1)
		ServeLoop(s, time.Minute, func(m Message) Message {
			handled.Add(1)
			if resetNext.Swap(false) {
				_ = s.Reset() // the answer's write fails: ServeLoop ends
			}
			return &Receipt{ID: m.(*Deliver).ID}
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A no-dial pool refuses before a connection exists.
	nodial := NewPool(cli, DeliverProtocol, true)
	defer nodial.Close()
	if _, err := nodial.Call(ctx, srv.ID(), &Deliver{ID: "0", FromID: cli.ID(), SentAt: time.Unix(1, 0)}); err == nil {
		t.Fatal("a no-dial pool dialled")
	}
	cli.Peerstore().AddAddrs(srv.ID(), srv.Addrs(), time.Hour)
	pl := NewPool(cli, DeliverProtocol, false)
	defer pl.Close()
	for i := range 5 {
		id := string(rune('a' + i))
		resp, err := pl.Call(ctx, srv.ID(), &Deliver{ID: id, FromID: cli.ID(), SentAt: time.Unix(1, 0)})
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := resp.(*Receipt); !ok || r.ID != id {
			t.Fatalf("answer %#v", resp)
		}
	}
	if got := streams.Load(); got != 1 {
		t.Fatalf("5 sequential calls used %d streams, want 1", got)
	}
	// The server handles the next request and resets the stream instead of answering: the call
	// fails and is not sent again (the request may have been handled); the next call opens a
	// fresh stream.
	resetNext.Store(true)
	if _, err := pl.Call(ctx, srv.ID(), &Deliver{ID: "x", FromID: cli.ID(), SentAt: time.Unix(1, 0)}); err == nil {
		t.Fatal("a call whose stream was reset succeeded")
	}
	if got := handled.Load(); got != 6 {
		t.Fatalf("the server handled %d requests, want 6 (no resend)", got)
	}
	if _, err := pl.Call(ctx, srv.ID(), &Deliver{ID: "y", FromID: cli.ID(), SentAt: time.Unix(1, 0)}); err != nil {
		t.Fatalf("call after a reset stream: %v", err)
	}
	if got := streams.Load(); got != 2 {
		t.Fatalf("streams %d, want 2", got)
	}
}
