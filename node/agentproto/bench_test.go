package agentproto

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/node/enforce"
	"github.com/vigil-mesh/vigil/node/telemetry"
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

// BenchmarkThrottleCheck is the cost of the throttle check for an agent that is not throttled:
// the check alone (a map lookup under a mutex) with no throttle held, with 65,536 other agents
// throttled, and from 8 goroutines at once; then the node's handling of a send without its
// network part (Router.onSend for a registered sender that holds no session: view lookup,
// session check, refusal, telemetry record) with the check and without it, 65,536 other
// agents throttled.
//
//	go test -run '^$' -bench BenchmarkThrottleCheck ./node/agentproto/
func BenchmarkThrottleCheck(b *testing.B) {
	now := time.Now()
	full := func(max int) *throttles {
		t := newThrottles(max)
		for i := range max {
			if _, err := t.set(peer.ID(strconv.Itoa(i)), 1, 5, now.Add(time.Hour), now); err != nil {
				b.Fatal(err)
			}
		}
		return t
	}
	const p = peer.ID("not-throttled")
	check := func(b *testing.B, t *throttles) {
		for b.Loop() {
			if ok, _, _ := t.allow(p, now); !ok {
				b.Fatal("refused")
			}
		}
	}
	b.Run("check/none-held", func(b *testing.B) { check(b, newThrottles(DefaultMaxThrottled)) })
	big := full(DefaultMaxThrottled)
	b.Run("check/65536-held", func(b *testing.B) { check(b, big) })
	b.Run("check/65536-held-8-goroutines", func(b *testing.B) {
		b.SetParallelism(8 / max(1, runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if ok, _, _ := big.allow(p, now); !ok {
					b.Error("refused")
					return
				}
			}
		})
	})

	f := newFixture(b)
	key := f.register("alpha", time.Hour)
	_, srv := newServer(b, f, nil)
	rc := DefaultRouterConfig()
	rc.Logger = testLogger(b)
	r, err := NewRouter(srv, rc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close() })
	r.throttled = big
	sender := key.ID().Peer()
	msg := &Send{To: "beta", Capability: "ask", Body: make([]byte, 256)}
	b.Run("onSend/with-check", func(b *testing.B) {
		for b.Loop() {
			if ref, ok := r.onSend(sender, msg).(*MsgRefusal); !ok || ref.Code != CodeSenderInactive {
				b.Fatalf("%+v", ref)
			}
		}
	})
	b.Run("onSend/without-check", func(b *testing.B) {
		for b.Loop() { // onSend's body minus the throttle check
			start := r.cfg.Now()
			rec := telemetry.Record{Time: start, AgentID: sender.String(), Kind: telemetry.KindSend, Action: msg.Capability,
				Peer: msg.To, Bytes: len(msg.Body)}
			answer := r.send(sender, msg, start, &rec)
			rec.Time = r.cfg.Now()
			rec.Latency = rec.Time.Sub(start)
			ref, ok := answer.(*MsgRefusal)
			if !ok || ref.Code != CodeSenderInactive {
				b.Fatalf("%+v", answer)
			}
			rec.Outcome, rec.Hop = ref.Code, ref.Hop.String()
			r.cfg.Record(rec)
		}
	})
}
