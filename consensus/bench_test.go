package consensus

import (
	"context"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/consensus/benchmark"
	"github.com/vigil-mesh/vigil/identity"
)

// Benchmarks of the real path: 3 voters on loopback, Badger with SyncWrites, raft over libp2p
// streams, one signed RegisterAgent per operation, proposed at the leader (as the etcd baseline
// writes to its leader). Commands are signed before the timer starts; every replica still verifies
// every signature. They use the same harness as the etcd baseline in consensus/benchmark, so
// `go test -run '^$' -bench Commit -benchtime 2000x ./consensus/...` measures both in one run.

const (
	minOneWriterOps = 100 // as the etcd baseline: b.N is 1 on the first call
	minWriterOps    = 640
	benchWriters    = 64
)

func benchCommands(b *testing.B, c *testCluster, n int) []*identity.Command {
	b.Helper()
	cmds := make([]*identity.Command, n)
	now := time.Now()
	for i := range cmds {
		cmds[i] = signed(b, c.cid, benchmark.SampleRegistration(i, mustKey(b).Public(), now), now, c.ops[0])
	}
	if got, want := len(cmds[0].Encode()), benchmark.ValueSize(); got != want {
		b.Fatalf("a benchmark command is %d bytes, the etcd baseline writes %d: keep them equal", got, want)
	}
	return cmds
}

func runCommitBench(b *testing.B, name string, writers, minOps int) {
	c := newTestCluster(b, 3, 1)
	leader := c.leader()
	n := max(b.N, minOps)
	cmds := benchCommands(b, c, n)
	propose := func(ctx context.Context, i int) error {
		res, err := leader.node.Propose(ctx, cmds[i])
		if err == nil && res.Err != nil {
			err = res.Err
		}
		return err
	}
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	b.ResetTimer()
	var res benchmark.Result
	var err error
	if writers == 1 {
		res, err = benchmark.Latency(ctx, n, propose)
	} else {
		res, err = benchmark.Throughput(ctx, writers, n, func(ctx context.Context, _, i int) error { return propose(ctx, i) })
	}
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Errors > 0 {
		b.Fatalf("%d of %d proposals failed", res.Errors, n)
	}
	res.Report(b, "")
	b.ReportMetric(float64(len(cmds[0].Encode())), "command-bytes") // after ResetTimer, which drops metrics
	b.Logf("vigil %s: n=%d %s", name, n, res)
}

func BenchmarkCommitOneWriter(b *testing.B) { runCommitBench(b, "one-writer", 1, minOneWriterOps) }

func BenchmarkCommit64Writers(b *testing.B) {
	runCommitBench(b, "64-writers", benchWriters, minWriterOps)
}
