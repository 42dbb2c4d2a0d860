// Package benchmark measures Vigil's replicated commit path against a baseline: etcd, started here
// as real member processes on loopback, driven by its Go client with values of ValueSize() bytes (the size of a real signed registration).
//
// It holds a small load harness that knows nothing about etcd or Vigil (Latency for one sequential
// writer, Throughput for many concurrent writers, Result with exact percentiles) and StartEtcd,
// which runs a durable etcd cluster for the duration of a benchmark.
//
//	c, err := benchmark.StartEtcd(b.TempDir(), 3) // errors.Is(err, benchmark.ErrEtcdNotFound): run scripts/install-etcd.sh
//	if err != nil { … }
//	b.Cleanup(c.Close)
//	res, err := benchmark.Latency(ctx, b.N, func(ctx context.Context, i int) error {
//		_, err := cli.Put(ctx, key(i), value)
//		return err
//	})
//	res.Report(b, "") // p50-ms, p99-ms, max-ms, ops/s
//
// Run with: go test -run '^$' -bench . -benchtime 2000x ./consensus/benchmark/
//
// Invariants:
//   - etcd runs with its default durability (fsync of the WAL before acknowledging), like Vigil's
//     Badger log store with SyncWrites on; nothing here trades safety for speed.
//   - Percentiles are nearest-rank order statistics of every recorded sample; failed operations are
//     counted in Result.Errors and never enter the latency samples.
//   - Every etcd process is killed and reaped by Close; on Linux the kernel also kills it if the test
//     process dies first (parent-death signal), so a failed or timed-out run leaves no orphan.
//   - Benchmarks report figures only; no test asserts a duration.
package benchmark
