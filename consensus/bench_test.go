package consensus

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

// Benchmarks of the real path: 3 voters on loopback, Badger with SyncWrites, raft over libp2p
// streams, one signed RegisterAgent per operation, proposed at the leader. Commands are signed
// before the timer starts. Run: go test -run '^$' -bench Commit -benchtime 2000x ./consensus/

func benchCommands(b *testing.B, c *testCluster, n int) []*identity.Command {
	b.Helper()
	cmds := make([]*identity.Command, n)
	now := time.Now()
	for i := range cmds {
		cmds[i] = registerAgent(b, c.cid, fmt.Sprintf("bench-%d", i), now, c.ops[0])
	}
	return cmds
}

func reportLatencies(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := min(len(lat)-1, int(float64(len(lat))*p/100))
		return float64(lat[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(50), "p50-ms")
	b.ReportMetric(pct(99), "p99-ms")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "ops/s")
}

func BenchmarkCommitOneWriter(b *testing.B) {
	c := newTestCluster(b, 3, 1)
	leader := c.leader()
	cmds := benchCommands(b, c, b.N)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		t0 := time.Now()
		if _, err := leader.node.Propose(c.ctx(), cmds[i]); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportLatencies(b, lat, elapsed)
}

func BenchmarkCommit64Writers(b *testing.B) {
	const writers = 64
	c := newTestCluster(b, 3, 1)
	leader := c.leader()
	cmds := benchCommands(b, c, b.N)
	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  = make([]time.Duration, 0, b.N)
		wg   sync.WaitGroup
		fail atomic.Value
	)
	b.ResetTimer()
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if _, err := leader.node.Propose(c.ctx(), cmds[i]); err != nil {
					fail.Store(err)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := fail.Load().(error); err != nil {
		b.Fatal(err)
	}
	reportLatencies(b, lat, elapsed)
}
