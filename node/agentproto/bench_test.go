package agentproto

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/vigil-mesh/vigil/node/enforce"
)

// BenchmarkConnect compares, in one run, a bare go-libp2p connect (no gater) with an agent
// connect through the enforcement gater plus Attach. Each iteration makes a new handshake.
func BenchmarkConnect(b *testing.B) {
	f := newFixture(b)
	key := f.register("alpha", time.Hour)
	g, err := enforce.NewGater(f.views, enforce.DefaultGaterConfig())
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ReverifyInterval = time.Hour
	cfg.Logger = testLogger(b)
	gated := newHost(b, f.node, g, true)
	srv, err := NewServer(gated, f.views, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	bare := newHost(b, mustKey(b), nil, true)
	agent := newHost(b, key, nil, false)
	ServeReverify(agent, key)

	run := func(b *testing.B, to host.Host, attach bool) {
		ctx := network.WithForceDirectDial(context.Background(), "bench")
		for b.Loop() {
			if attach {
				if _, err := Attach(ctx, agent, info(to)); err != nil {
					b.Fatal(err)
				}
			} else if err := agent.Connect(ctx, info(to)); err != nil {
				b.Fatal(err)
			}
			_ = agent.Network().ClosePeer(to.ID())
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, bare, false) })
	b.Run("gated+attach", func(b *testing.B) { run(b, gated, true) })
}
