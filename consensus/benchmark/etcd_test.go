package benchmark

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Minimum op counts: the benchmark framework first calls each benchmark with b.N = 1, and a
// percentile over a handful of samples means nothing.
const (
	minOneWriterOps = 100
	benchWriters    = 64
	minWriterOps    = 10 * benchWriters
	opTimeout       = 10 * time.Second
)

// startEtcdOrSkip starts a 3-member cluster for tb and registers Close as a cleanup, or skips when
// etcd is not installed.
func startEtcdOrSkip(tb testing.TB) *EtcdCluster {
	tb.Helper()
	c, err := StartEtcd(tb.TempDir(), 3)
	if errors.Is(err, ErrEtcdNotFound) {
		tb.Skipf("etcd baseline skipped: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// leaderClient returns a client bound to the leader only, so every Put takes the same path as a
// command submitted on Vigil's leader (no follower-to-leader forwarding hop).
func leaderClient(tb testing.TB, c *EtcdCluster) *clientv3.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 5*time.Second)
	defer cancel()
	leader, err := c.Leader(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	cli, err := c.Client(leader)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	if _, err := cli.Put(ctx, "/vigil-bench/warmup", string(Value(0))); err != nil { // opens the connection
		tb.Fatal(err)
	}
	return cli
}

func putOp(cli *clientv3.Client, prefix string, val string) func(ctx context.Context, i int) error {
	return func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		_, err := cli.Put(ctx, fmt.Sprintf("%s%08d", prefix, i), val)
		return err
	}
}

// finish checks the run and that every acknowledged write is readable (a linearizable count), then
// reports the figures and logs the summary line.
func finish(b *testing.B, cli *clientv3.Client, name, prefix string, n int, res Result, err error) {
	b.Helper()
	if err != nil {
		b.Fatalf("%s: %v (%v)", name, err, res)
	}
	if res.Errors > 0 {
		b.Errorf("%s: %d of %d puts failed", name, res.Errors, n)
	}
	ctx, cancel := context.WithTimeout(b.Context(), opTimeout)
	defer cancel()
	got, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		b.Fatal(err)
	}
	if got.Count != int64(res.Ops) {
		b.Fatalf("%s: %d puts acknowledged but %d keys readable", name, res.Ops, got.Count)
	}
	res.Report(b, "")
	b.ReportMetric(float64(res.Elapsed.Nanoseconds())/float64(n), "ns/op") // n may exceed b.N
	// b.Logf, not fmt.Printf: the testing package prints benchmark logs after the result line, so the
	// result stays on one line for benchstat; benchmark logs are shown without -v.
	b.Logf("etcd %s: n=%d p50=%v p99=%v max=%v ops/s=%.0f errors=%d\n", name, n,
		res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), res.Max.Round(time.Microsecond),
		res.OpsPerSec, res.Errors)
}

// BenchmarkEtcdCommitOneWriter: commit latency of one sequential writer, Put of ValueSize() bytes to a
// 3-member durable etcd cluster on loopback.
func BenchmarkEtcdCommitOneWriter(b *testing.B) {
	c := startEtcdOrSkip(b)
	cli := leaderClient(b, c)
	n := max(b.N, minOneWriterOps)
	prefix := fmt.Sprintf("/vigil-bench/one/%d/", b.N)
	op := putOp(cli, prefix, string(Value(1)))
	b.ResetTimer()
	res, err := Latency(b.Context(), n, op)
	b.StopTimer()
	finish(b, cli, "one-writer", prefix, n, res, err)
}

// BenchmarkEtcdCommit64Writers: throughput of 64 concurrent writers sharing one client (one gRPC
// connection, as a Go service would), same cluster shape and value size.
func BenchmarkEtcdCommit64Writers(b *testing.B) {
	c := startEtcdOrSkip(b)
	cli := leaderClient(b, c)
	n := max(b.N, minWriterOps)
	prefix := fmt.Sprintf("/vigil-bench/w64/%d/", b.N)
	op := putOp(cli, prefix, string(Value(2)))
	b.ResetTimer()
	res, err := Throughput(b.Context(), benchWriters, n, func(ctx context.Context, _, i int) error { return op(ctx, i) })
	b.StopTimer()
	finish(b, cli, "64-writers", prefix, n, res, err)
}

// TestStartEtcd starts a real cluster, writes through one member and reads through another, then
// checks that Close leaves no process behind.
func TestStartEtcd(t *testing.T) {
	c := startEtcdOrSkip(t)
	eps := c.Endpoints()
	if len(eps) != 3 {
		t.Fatalf("endpoints %v", eps)
	}
	for _, ep := range eps {
		if !strings.HasPrefix(ep, "http://127.0.0.1:") {
			t.Fatalf("endpoint %q is not on loopback", ep)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	w, err := c.Client(eps[0])
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := c.Client(eps[2])
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	val := string(Value(3))
	if _, err := w.Put(ctx, "k", val); err != nil {
		t.Fatal(err)
	}
	got, err := r.Get(ctx, "k") // linearizable by default
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != val {
		t.Fatalf("read back %d kvs", len(got.Kvs))
	}
	if _, err := c.Leader(ctx); err != nil {
		t.Fatal(err)
	}

	c.Close()
	c.Close() // idempotent
	for _, m := range c.members {
		if err := m.cmd.Process.Signal(syscall.Signal(0)); !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("member %s (pid %d) still running after Close: %v", m.name, m.cmd.Process.Pid, err)
		}
	}
}

func TestStartEtcdWithoutBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := StartEtcd(t.TempDir(), 3)
	if !errors.Is(err, ErrEtcdNotFound) {
		t.Fatalf("err = %v, want ErrEtcdNotFound", err)
	}
	if !strings.Contains(err.Error(), "scripts/install-etcd.sh") {
		t.Fatalf("error %q does not name scripts/install-etcd.sh", err)
	}
}

func TestStartEtcdMemberFailsFast(t *testing.T) {
	if _, err := exec.LookPath("false"); err != nil {
		t.Skip("no false binary")
	}
	cfg := DefaultEtcdConfig(t.TempDir())
	cfg.Binary, cfg.Attempts = "false", 1 // exits at once, like an etcd that cannot bind its port
	start := time.Now()
	if _, err := StartEtcdWith(cfg); !errors.Is(err, ErrEtcdStart) {
		t.Fatalf("err = %v, want ErrEtcdStart", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("a member that exits must fail the start early, not at StartTimeout")
	}
}

func TestEtcdConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*EtcdConfig)
	}{
		{"empty dir", func(c *EtcdConfig) { c.Dir = "" }},
		{"zero members", func(c *EtcdConfig) { c.Members = 0 }},
		{"too many members", func(c *EtcdConfig) { c.Members = 10 }},
		{"empty binary", func(c *EtcdConfig) { c.Binary = "" }},
		{"zero timeout", func(c *EtcdConfig) { c.StartTimeout = 0 }},
		{"zero attempts", func(c *EtcdConfig) { c.Attempts = 0 }},
		{"nil logger", func(c *EtcdConfig) { c.Logger = nil }},
	}
	if err := DefaultEtcdConfig("/x").Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultEtcdConfig("/x")
			tc.edit(&cfg)
			if err := cfg.Validate(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}
