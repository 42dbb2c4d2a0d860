package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"

	"github.com/vigil-mesh/vigil/agent"
	"github.com/vigil-mesh/vigil/node/agentproto"
)

// BenchmarkAgentMessaging measures one message agent → node-1 → node-2 → agent (authorised at
// both nodes, acknowledged by the destination's handler) with the Go SDK, interleaved, message
// by message, with the same message over a bare libp2p stream between two hosts (TLS, one
// reused stream, the same frame codec, an Ack back): the baseline. Reports p50/p99 of both, the
// ratio of the medians, and messages/s of the authorised path (one sender, one at a time).
//
//	go test -run '^$' -bench BenchmarkAgentMessaging -benchtime 2000x ./node/
func BenchmarkAgentMessaging(b *testing.B) {
	c := startE2ECluster(b, 2)
	sk := c.registerWith("bench-sender", []string{"ask:bench-receiver"}, nil)
	rk := c.registerWith("bench-receiver", nil, nil)
	sender := connectAgent(b, sk, c.nodes[0])
	receiver := connectAgent(b, rk, c.nodes[1])
	receiver.Handle("ask", func(context.Context, agent.Message) error { return nil })
	waitAttached(b, c.nodes[1], rk)
	body := make([]byte, 256)

	// The baseline: two plain hosts, one stream, Deliver → Ack with the same codec.
	srv, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.Security(libp2ptls.ID, libp2ptls.New))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	srv.SetStreamHandler(agentproto.DeliverProtocol, func(s network.Stream) {
		agentproto.ServeLoop(s, time.Minute, func(agentproto.Message) agentproto.Message { return &agentproto.Ack{} })
	})
	cli, err := libp2p.New(libp2p.NoListenAddrs, libp2p.Security(libp2ptls.ID, libp2ptls.New))
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	if err := cli.Connect(ctx, peer.AddrInfo{ID: srv.ID(), Addrs: srv.Addrs()}); err != nil {
		b.Fatal(err)
	}
	bare := agentproto.NewPool(cli, agentproto.DeliverProtocol, true)
	defer bare.Close()
	msg := &agentproto.Deliver{ID: "x-1", From: "bench-sender", FromID: sk.ID().Peer(), To: "bench-receiver",
		Capability: "ask", SentAt: time.Now(), Body: body}

	// A second baseline with the same hop count as the authorised path: client → relay-1 →
	// relay-2 → end over bare streams, each relay forwarding the frame and the Ack, with no
	// authorisation, no telemetry and no SDK.
	var chain []*chainHop
	next := srv
	for range 2 {
		hop := newChainHop(b, next)
		chain = append(chain, hop)
		next = hop.h
	}
	hopCli := agentproto.NewPool(cli, agentproto.DeliverProtocol, false)
	defer hopCli.Close()
	first := chain[len(chain)-1].h
	cli.Peerstore().AddAddrs(first.ID(), first.Addrs(), time.Hour)

	// Warm the paths (locate, stream negotiation).
	for range 20 {
		if _, err := sender.Send(ctx, "bench-receiver", "ask", body); err != nil {
			b.Fatal(err)
		}
		if _, err := bare.Call(ctx, srv.ID(), msg); err != nil {
			b.Fatal(err)
		}
		if _, err := hopCli.Call(ctx, first.ID(), msg); err != nil {
			b.Fatal(err)
		}
	}
	three := make([]time.Duration, 0, b.N)
	auth := make([]time.Duration, 0, b.N)
	base := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := sender.Send(ctx, "bench-receiver", "ask", body); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := bare.Call(ctx, srv.ID(), msg); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := hopCli.Call(ctx, first.ID(), msg); err != nil {
			b.Fatal(err)
		}
		auth, base, three = append(auth, t1.Sub(t0)), append(base, t2.Sub(t1)), append(three, time.Since(t2))
	}
	b.StopTimer()
	slices.Sort(auth)
	slices.Sort(base)
	slices.Sort(three)
	b.ReportMetric(ms(percentile(three, 0.5)), "bare3hop-p50-ms")
	b.ReportMetric(ms(percentile(three, 0.99)), "bare3hop-p99-ms")
	b.ReportMetric(float64(percentile(auth, 0.5))/float64(percentile(three, 0.5)), "p50-ratio-3hop")
	b.ReportMetric(ms(percentile(auth, 0.5)), "auth-p50-ms")
	b.ReportMetric(ms(percentile(auth, 0.99)), "auth-p99-ms")
	b.ReportMetric(ms(percentile(base, 0.5)), "bare-p50-ms")
	b.ReportMetric(ms(percentile(base, 0.99)), "bare-p99-ms")
	b.ReportMetric(float64(percentile(auth, 0.5))/float64(percentile(base, 0.5)), "p50-ratio")
	var sum time.Duration
	for _, d := range auth {
		sum += d
	}
	b.ReportMetric(float64(len(auth))/sum.Seconds(), "auth-msgs/s")
	sum = 0
	for _, d := range base {
		sum += d
	}
	b.ReportMetric(float64(len(base))/sum.Seconds(), "bare-msgs/s")
}

// chainHop is a plain host that forwards every Deliver frame to the next host and its answer
// back: one hop of the three-hop baseline.
type chainHop struct {
	h    host.Host
	next *agentproto.Pool
}

func newChainHop(b *testing.B, next host.Host) *chainHop {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.Security(libp2ptls.ID, libp2ptls.New))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	h.Peerstore().AddAddrs(next.ID(), next.Addrs(), time.Hour)
	c := &chainHop{h: h, next: agentproto.NewPool(h, agentproto.DeliverProtocol, false)}
	b.Cleanup(c.next.Close)
	h.SetStreamHandler(agentproto.DeliverProtocol, func(s network.Stream) {
		agentproto.ServeLoop(s, time.Minute, func(m agentproto.Message) agentproto.Message {
			resp, err := c.next.Call(context.Background(), next.ID(), m)
			if err != nil {
				return &agentproto.MsgRefusal{Code: "x", Hop: agentproto.HopReceiver, Reason: err.Error()}
			}
			return resp
		})
	})
	return c
}
