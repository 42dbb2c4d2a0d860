package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
)

// percentile is the nearest-rank percentile q (0 < q ≤ 1) of sorted samples.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// disconnectWatch records, per node, when its last connection to the watched peer closed
// (libp2p's Disconnected notification on the node's host).
type disconnectWatch struct {
	mu     sync.Mutex
	target peer.ID
	at     map[int]time.Time
	done   chan struct{} // closed once every node has reported
	nodes  int
}

func (w *disconnectWatch) arm(p peer.ID, nodes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.target, w.nodes, w.at, w.done = p, nodes, map[int]time.Time{}, make(chan struct{})
}

func (w *disconnectWatch) notifiee(i int) network.Notifiee {
	return &network.NotifyBundle{DisconnectedF: func(n network.Network, c network.Conn) {
		now := time.Now()
		w.mu.Lock()
		defer w.mu.Unlock()
		if c.RemotePeer() != w.target || len(n.ConnsToPeer(w.target)) > 0 {
			return
		}
		if _, seen := w.at[i]; seen {
			return
		}
		w.at[i] = now
		if len(w.at) == w.nodes {
			close(w.done)
		}
	}}
}

// BenchmarkRevokeEnforced measures the promise "revocation enforced on every connected node":
// three nodes, a resident agent on each, and per iteration a freshly registered agent attached to
// all three; the time from the start of Propose(revoke), through each node in turn, to the moment
// the agent's connection is gone on every node. p50/p99 are exact over all iterations.
func BenchmarkRevokeEnforced(b *testing.B) {
	c := startE2ECluster(b, 3)
	ctx := context.Background()
	for i, n := range c.nodes {
		k := c.register(fmt.Sprintf("resident-%d", i+1))
		if _, err := agentproto.Attach(ctx, newAgentHost(b, k), addrInfo(n)); err != nil {
			b.Fatal(err)
		}
	}
	w := &disconnectWatch{}
	for i, n := range c.nodes {
		nb := w.notifiee(i)
		n.Host().Network().Notify(nb)
		defer n.Host().Network().StopNotify(nb)
	}
	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		name := fmt.Sprintf("bench-%d", i)
		k := c.register(name)
		ah, err := libp2p.New(libp2p.Identity(k.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			b.Fatal(err)
		}
		agentproto.ServeReverify(ah, k)
		for _, n := range c.nodes {
			if _, err := agentproto.Attach(ctx, ah, addrInfo(n)); err != nil {
				b.Fatalf("attach to %s: %v", n.cfg.Node.Name, err)
			}
		}
		w.arm(ah.ID(), len(c.nodes))
		cmd, err := identity.NewCommand(c.cid, &identity.RevokeAgent{Name: name, Reason: "bench"}, time.Now(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		cmd.Sign(c.op)
		via := c.nodes[i%len(c.nodes)]
		b.StartTimer()
		start := time.Now()
		res, err := via.Consensus().Propose(ctx, cmd)
		if err == nil {
			err = res.Err
		}
		if err != nil {
			b.Fatalf("revoke: %v", err)
		}
		select {
		case <-w.done:
		case <-time.After(10 * time.Second):
			b.Fatalf("revocation of %s not enforced on every node within 10 s", name)
		}
		b.StopTimer()
		w.mu.Lock()
		var last time.Time
		for _, at := range w.at {
			if at.After(last) {
				last = at
			}
		}
		w.mu.Unlock()
		samples = append(samples, last.Sub(start))
		ah.Close()
	}
	slices.Sort(samples)
	b.ReportMetric(ms(percentile(samples, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(samples, 0.99)), "p99-ms")
	b.ReportMetric(ms(samples[len(samples)-1]), "max-ms")
}

// echoProtocol is a one-byte echo on the plain host: the bare-libp2p counterpart of one attach
// exchange.
const echoProtocol = protocol.ID("/vigil-bench/echo/1")

// BenchmarkAgentConnect compares, in the same run and interleaved, an agent's connect + attach
// (handshake, gater, identify, the attach exchange) to a node, with a bare go-libp2p connect to a
// plain host (same security transport), and with a bare connect plus one stream round trip.
// Every iteration starts from no connection.
func BenchmarkAgentConnect(b *testing.B) {
	c := startE2ECluster(b, 1)
	n := c.nodes[0]
	k := c.register("connector")
	ah := newAgentHost(b, k)
	target := addrInfo(n)

	plain, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.Security(libp2ptls.ID, libp2ptls.New))
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	plain.SetStreamHandler(echoProtocol, func(s network.Stream) {
		var buf [1]byte
		if _, err := io.ReadFull(s, buf[:]); err == nil {
			_, _ = s.Write(buf[:])
		}
		_ = s.Close()
	})
	client, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	plainInfo := peer.AddrInfo{ID: plain.ID(), Addrs: plain.Addrs()}
	ctx := context.Background()

	var bare, rtt, attach time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := client.Connect(ctx, plainInfo); err != nil {
			b.Fatal(err)
		}
		bare += time.Since(t0)
		client.Network().ClosePeer(plain.ID())

		t1 := time.Now()
		if err := client.Connect(ctx, plainInfo); err != nil {
			b.Fatal(err)
		}
		s, err := client.NewStream(ctx, plain.ID(), echoProtocol)
		if err != nil {
			b.Fatal(err)
		}
		var buf [1]byte
		if _, err := s.Write([]byte{1}); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf[:]); err != nil {
			b.Fatal(err)
		}
		s.Close()
		rtt += time.Since(t1)
		client.Network().ClosePeer(plain.ID())

		t2 := time.Now()
		if _, err := agentproto.Attach(ctx, ah, target); err != nil {
			b.Fatal(err)
		}
		attach += time.Since(t2)
		ah.Network().ClosePeer(n.Host().ID())
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d) / float64(b.N) / float64(time.Microsecond) }
	b.ReportMetric(per(bare), "bare-connect-us")
	b.ReportMetric(per(rtt), "bare-connect+rtt-us")
	b.ReportMetric(per(attach), "attach-us")
	b.ReportMetric(float64(attach)/float64(bare), "attach/bare-connect")
	b.ReportMetric(float64(attach)/float64(rtt), "attach/bare-connect+rtt")
}
