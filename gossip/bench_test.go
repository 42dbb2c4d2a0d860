package gossip

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

// serfRounds is Serf's convergence model (PITFALLS.md): the fraction of N nodes reached after t
// gossip rounds is 1/(1+(N+1)·e^(−c·N·t)) with c = (fanout/N)·(1−loss)·(1−fail)·0.5. It returns
// the rounds until the fraction reaches target.
func serfRounds(n, fanout int, loss, fail, target float64) float64 {
	c := float64(fanout) / float64(n) * (1 - loss) * (1 - fail) * 0.5
	// target = 1/(1+(N+1)e^(−cNt))  ⇒  t = ln((N+1)·target/(1−target)) / (c·N)
	return math.Log(float64(n+1)*target/(1-target)) / (c * float64(n))
}

func TestSerfModel(t *testing.T) {
	// PITFALLS: 99.99% in 8–11 rounds for N = 3…1000 with fanout 3, no loss.
	for _, n := range []int{3, 10, 30, 1000} {
		r := serfRounds(n, 3, 0, 0, 0.9999)
		if r < 7 || r > 12 {
			t.Errorf("N=%d: %.1f rounds", n, r)
		}
	}
}

// BenchmarkSignalConvergence measures the time for one signal published by node 0 to be
// delivered on every other node, on the in-memory transport with 0% and 10% loss, for the lan
// and local profiles and 3, 10 and 30 nodes. It reports p50 and p99 over b.N signals, the
// bytes each node sent per second (everything memberlist sent: probes, gossip, push/pull), and
// Serf's model for the same settings (rounds to 99.99% × the gossip interval).
//
//	go test ./gossip -run '^$' -bench SignalConvergence -benchtime 30x
func BenchmarkSignalConvergence(b *testing.B) {
	for _, prof := range []struct {
		p        Profile
		interval time.Duration
	}{{ProfileLocal, 100 * time.Millisecond}, {ProfileLAN, 200 * time.Millisecond}} {
		for _, loss := range []float64{0, 0.10} {
			for _, n := range []int{3, 10, 30} {
				name := fmt.Sprintf("%s/loss=%d%%/nodes=%d", prof.p, int(loss*100), n)
				b.Run(name, func(b *testing.B) { benchConvergence(b, prof.p, prof.interval, loss, n) })
			}
		}
	}
}

func benchConvergence(b *testing.B, p Profile, interval time.Duration, loss float64, n int) {
	c := newBenchCluster(b, n, p)
	c.net.SetLoss(loss)
	agent := c.key().Public()
	var lat []time.Duration
	var sent0 uint64
	for _, nd := range c.nodes {
		sent0 += nd.tr.SentBytes()
	}
	start := time.Now()
	b.ResetTimer()
	for i := range b.N {
		s := c.signal(c.nodes[0].key, fmt.Sprintf("agent-%d", i), agent)
		want := make([]int64, n)
		for j, nd := range c.nodes {
			want[j] = nd.signals.Load() + 1
		}
		t0 := time.Now()
		if err := c.nodes[0].mesh.PublishSignal(s); err != nil {
			b.Fatal(err)
		}
		deadline := t0.Add(30 * time.Second)
		for {
			done := true
			for j, nd := range c.nodes[1:] {
				if nd.signals.Load() < want[j+1] {
					done = false
					break
				}
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("signal %d did not reach every node in 30s", i)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	elapsed := time.Since(start).Seconds()
	var sent uint64
	for _, nd := range c.nodes {
		sent += nd.tr.SentBytes()
	}
	slices.Sort(lat)
	pct := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(lat)))) - 1
		return float64(lat[max(i, 0)].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(sent-sent0)/elapsed/float64(n), "B/s/node")
	b.ReportMetric(serfRounds(n, 3, loss, 0, 0.9999)*float64(interval.Milliseconds()), "serf-model-ms")
	b.ReportMetric(0, "ns/op")
}

// newBenchCluster is newTestCluster for benchmarks: n nodes on one MemNetwork, full membership.
func newBenchCluster(b *testing.B, n int, p Profile) *testCluster {
	b.Helper()
	c := &testCluster{t: b, rnd: seeded(uint64(n)), net: NewMemNetwork(uint64(n)), admit: &admitSet{}}
	var err error
	if c.cluster, err = identity.NewClusterID(c.rnd); err != nil {
		b.Fatal(err)
	}
	var addrs []string
	for range n {
		k, err := identity.GenerateKey(c.rnd)
		if err != nil {
			b.Fatal(err)
		}
		nd := &testNode{key: k, tr: c.net.NewTransport(k.ID().String())}
		c.admit.add(k.ID())
		cfg := c.config(k, nd.tr, nd)
		cfg.Profile = p
		cfg.Rate, cfg.Burst = 1000, 1000
		m, err := Start(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		nd.mesh = m
		if len(addrs) > 0 {
			if _, err := m.Join(addrs); err != nil {
				b.Fatal(err)
			}
		}
		addrs = append(addrs, nd.tr.Addr())
		c.nodes = append(c.nodes, nd)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, nd := range c.nodes {
			if nd.mesh.NumMembers() != n {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("membership did not converge")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

// BenchmarkIdleBytes measures what each node sends per second with no payload at all
// (memberlist's probes, acks and push/pull), the floor under BenchmarkSignalConvergence's B/s.
//
//	go test ./gossip -run '^$' -bench IdleBytes -benchtime 1x
func BenchmarkIdleBytes(b *testing.B) {
	for _, p := range []Profile{ProfileLocal, ProfileLAN} {
		for _, n := range []int{3, 10, 30} {
			b.Run(fmt.Sprintf("%s/nodes=%d", p, n), func(b *testing.B) {
				c := newBenchCluster(b, n, p)
				time.Sleep(time.Second) // let join traffic settle
				var s0 uint64
				for _, nd := range c.nodes {
					s0 += nd.tr.SentBytes()
				}
				const window = 5 * time.Second
				time.Sleep(window)
				var s1 uint64
				for _, nd := range c.nodes {
					s1 += nd.tr.SentBytes()
				}
				b.ReportMetric(float64(s1-s0)/window.Seconds()/float64(n), "B/s/node")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
