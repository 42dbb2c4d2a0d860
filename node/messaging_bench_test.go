package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"

	"github.com/vigil-mesh/vigil/agent"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
)

// BenchmarkAgentMessaging measures one message agent → node-1 → node-2 → agent (authorised at
// both nodes, acknowledged by the destination's handler) with the Go SDK, interleaved message by
// message with the same message over bare libp2p streams, one hop and three hops (see
// setupMessagingBench). Reports p50/p99 of each, the ratios of the medians, and messages/s with
// one sender sending one message at a time.
//
//	go test -run '^$' -bench 'BenchmarkAgentMessaging$' -benchtime 5000x ./node/
func BenchmarkAgentMessaging(b *testing.B) {
	paths := setupMessagingBench(b)
	ctx := context.Background()
	// Warm the paths (locate, stream negotiation).
	for range 20 {
		for _, send := range paths {
			if err := send(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	samples := make([][]time.Duration, len(paths))
	b.ResetTimer()
	for range b.N {
		for i, send := range paths {
			t0 := time.Now()
			if err := send(ctx); err != nil {
				b.Fatal(err)
			}
			samples[i] = append(samples[i], time.Since(t0))
		}
	}
	b.StopTimer()
	auth, base, three := samples[0], samples[1], samples[2]
	for _, s := range samples {
		slices.Sort(s)
	}
	b.ReportMetric(ms(percentile(auth, 0.5)), "auth-p50-ms")
	b.ReportMetric(ms(percentile(auth, 0.99)), "auth-p99-ms")
	b.ReportMetric(ms(percentile(base, 0.5)), "bare-p50-ms")
	b.ReportMetric(ms(percentile(base, 0.99)), "bare-p99-ms")
	b.ReportMetric(ms(percentile(three, 0.5)), "bare3hop-p50-ms")
	b.ReportMetric(ms(percentile(three, 0.99)), "bare3hop-p99-ms")
	b.ReportMetric(float64(percentile(auth, 0.5))/float64(percentile(base, 0.5)), "p50-ratio")
	b.ReportMetric(float64(percentile(auth, 0.5))/float64(percentile(three, 0.5)), "p50-ratio-3hop")
	b.ReportMetric(rate(auth), "auth-msgs/s")
	b.ReportMetric(rate(base), "bare-msgs/s")
}

// BenchmarkAgentMessagingParallel measures throughput with 8 concurrent senders sharing one
// client: rounds of 200 messages per path, alternating authorised, bare 1 hop and bare 3 hops,
// so all three see the same machine load. Reports messages/s per path.
//
//	go test -run '^$' -bench BenchmarkAgentMessagingParallel -benchtime 20x ./node/
func BenchmarkAgentMessagingParallel(b *testing.B) {
	const senders, round = 8, 200
	paths := setupMessagingBench(b)
	ctx := context.Background()
	elapsed := make([]time.Duration, len(paths))
	runRound := func(send func(context.Context) error) time.Duration {
		var wg sync.WaitGroup
		errs := make(chan error, senders)
		t0 := time.Now()
		for range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range round / senders {
					if err := send(ctx); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		d := time.Since(t0)
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
		return d
	}
	for _, send := range paths {
		runRound(send) // warm: one stream per sender on every hop
	}
	b.ResetTimer()
	for range b.N {
		for i, send := range paths {
			elapsed[i] += runRound(send)
		}
	}
	b.StopTimer()
	msgs := float64(b.N * round)
	b.ReportMetric(msgs/elapsed[0].Seconds(), "auth-msgs/s")
	b.ReportMetric(msgs/elapsed[1].Seconds(), "bare-msgs/s")
	b.ReportMetric(msgs/elapsed[2].Seconds(), "bare3hop-msgs/s")
}

func rate(ds []time.Duration) float64 {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return float64(len(ds)) / sum.Seconds()
}

// setupMessagingBench returns three ways to send the same 256-byte message and wait for its
// acknowledgement: [0] authorised through the SDK, agent → node-1 → node-2 → agent on a 2-node
// cluster; [1] a bare libp2p stream between two hosts (TLS, a reused stream, the same frame
// codec, an Ack back); [2] bare streams over the same number of hops as [0] (client → relay →
// relay → end, each relay forwarding frame and Ack, with no authorisation, telemetry or SDK).
func setupMessagingBench(b *testing.B) []func(context.Context) error {
	c := startE2ECluster(b, 2)
	sk := c.registerWith("bench-sender", []string{"ask:bench-receiver"}, nil)
	rk := c.registerWith("bench-receiver", nil, nil)
	sender := connectAgent(b, sk, c.nodes[0])
	receiver := connectAgent(b, rk, c.nodes[1])
	receiver.Handle("ask", func(context.Context, agent.Message) error { return nil })
	waitAttached(b, c.nodes[1], rk)
	body := make([]byte, 256)

	srv, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.Security(libp2ptls.ID, libp2ptls.New))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	srv.SetStreamHandler(agentproto.DeliverProtocol, func(s network.Stream) {
		agentproto.ServeLoop(s, time.Minute, func(agentproto.Message) agentproto.Message { return &agentproto.Ack{} })
	})
	cli, err := libp2p.New(libp2p.NoListenAddrs, libp2p.Security(libp2ptls.ID, libp2ptls.New))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cli.Close() })
	if err := cli.Connect(context.Background(), peer.AddrInfo{ID: srv.ID(), Addrs: srv.Addrs()}); err != nil {
		b.Fatal(err)
	}
	bare := agentproto.NewPool(cli, agentproto.DeliverProtocol, true)
	b.Cleanup(bare.Close)
	msg := &agentproto.Deliver{ID: "x-1", From: "bench-sender", FromID: sk.ID().Peer(), To: "bench-receiver",
		Capability: "ask", SentAt: time.Now(), Body: body}

	next := srv
	for range 2 {
		next = newChainHop(b, next).h
	}
	first := next
	cli.Peerstore().AddAddrs(first.ID(), first.Addrs(), time.Hour)
	hops := agentproto.NewPool(cli, agentproto.DeliverProtocol, false)
	b.Cleanup(hops.Close)

	return []func(context.Context) error{
		func(ctx context.Context) error { _, err := sender.Send(ctx, "bench-receiver", "ask", body); return err },
		func(ctx context.Context) error { _, err := bare.Call(ctx, srv.ID(), msg); return err },
		func(ctx context.Context) error { _, err := hops.Call(ctx, first.ID(), msg); return err },
	}
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

// BenchmarkRevokeCutsOffSDKAgent measures revocation of an agent attached through the SDK (so
// the node writes a notice and waits for the agent to read it before closing): from the start of
// Propose(revoke) to the node's connection to the agent being gone (close-ms) and to the client's
// Notify reporting StateCutOff with the reason (notice-ms). Three nodes; each iteration registers
// a fresh agent on the next node.
//
//	go test -run '^$' -bench BenchmarkRevokeCutsOffSDKAgent -benchtime 50x ./node/
func BenchmarkRevokeCutsOffSDKAgent(b *testing.B) {
	c := startE2ECluster(b, 3)
	ctx := context.Background()
	w := &disconnectWatch{}
	for i, n := range c.nodes {
		nb := w.notifiee(i)
		n.Host().Network().Notify(nb)
		defer n.Host().Network().StopNotify(nb)
	}
	closeLat := make([]time.Duration, 0, b.N)
	noticeLat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		name := fmt.Sprintf("sdk-%d", i)
		k := c.registerWith(name, nil, nil)
		n := c.nodes[i%len(c.nodes)]
		cl := connectAgent(b, k, n)
		waitAttached(b, n, k)
		w.arm(k.ID().Peer(), 1) // only the node it attached to holds a connection
		cmd, err := identity.NewCommand(c.cid, &identity.RevokeAgent{Name: name, Reason: "bench"}, time.Now(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		cmd.Sign(c.op)
		b.StartTimer()
		start := time.Now()
		res, err := c.nodes[(i+1)%len(c.nodes)].Consensus().Propose(ctx, cmd)
		if err == nil {
			err = res.Err
		}
		if err != nil {
			b.Fatalf("revoke: %v", err)
		}
		var noticed time.Time
		for noticed.IsZero() {
			select {
			case e := <-cl.Notify():
				if e.State == agent.StateCutOff {
					if !strings.Contains(e.Reason, "bench") {
						b.Fatalf("cut-off reason %q", e.Reason)
					}
					noticed = time.Now()
				}
			case <-time.After(10 * time.Second):
				b.Fatal("no StateCutOff within 10 s")
			}
		}
		select {
		case <-w.done:
		case <-time.After(10 * time.Second):
			b.Fatal("connection not closed within 10 s")
		}
		b.StopTimer()
		w.mu.Lock()
		closed := w.at[i%len(c.nodes)]
		w.mu.Unlock()
		if closed.IsZero() {
			b.Fatal("the connection closed on another node than the agent's")
		}
		closeLat = append(closeLat, closed.Sub(start))
		noticeLat = append(noticeLat, noticed.Sub(start))
		cl.Close()
	}
	slices.Sort(closeLat)
	slices.Sort(noticeLat)
	b.ReportMetric(ms(percentile(closeLat, 0.5)), "close-p50-ms")
	b.ReportMetric(ms(percentile(closeLat, 0.99)), "close-p99-ms")
	b.ReportMetric(ms(percentile(noticeLat, 0.5)), "notice-p50-ms")
	b.ReportMetric(ms(percentile(noticeLat, 0.99)), "notice-p99-ms")
}
