package admin_test

import (
	"context"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// BenchmarkReads measures admin read calls per second on a real one-node cluster, over mTLS
// (HTTP/2, kept-alive) and over the Unix socket, local and consistent.
func BenchmarkReads(b *testing.B) {
	e := newEnv(b)
	for _, tc := range []struct {
		name       string
		c          client.Client
		consistent bool
	}{
		{"tls/status", e.tlsClient(e.ops[0]), false},
		{"tls/status-consistent", e.tlsClient(e.ops[0]), true},
		{"unix/status", client.DialUnix(e.sock), false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			req := &adminv1.StatusRequest{Consistent: tc.consistent}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := tc.c.Status(ctx, connect.NewRequest(req)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}

// BenchmarkCallMetrics compares Status on the Unix socket of two servers over the same node, one
// with the metrics interceptor and one without (the baseline), in the same run.
func BenchmarkCallMetrics(b *testing.B) {
	e := newEnv(b)
	withMetrics := func(on bool) client.Client {
		cfg := admin.DefaultConfig()
		cfg.Key, cfg.Logger = e.nodeKey, testLogger(b)
		if on {
			cfg.Metrics = prometheus.NewRegistry()
		}
		srv := admin.NewServer(e.node, cfg)
		sock := filepath.Join(b.TempDir(), "b.sock")
		if err := srv.ServeUnix(sock); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = srv.Close() })
		return client.DialUnix(sock)
	}
	for _, tc := range []struct {
		name string
		c    client.Client
	}{{"baseline=no-metrics", withMetrics(false)}, {"metrics", withMetrics(true)}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.c.Status(ctx, connect.NewRequest(&adminv1.StatusRequest{})); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
