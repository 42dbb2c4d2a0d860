package admin_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"

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
