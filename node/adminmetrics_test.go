package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// TestAdminCallsInMetrics: the daemon's /metrics counts and times its admin API calls.
func TestAdminCallsInMetrics(t *testing.T) {
	n, _, op := testNode(t)
	c, err := client.Dial(n.adminLn.Addr().String(), n.Host().ID(), op)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if _, err := c.Status(ctx, connect.NewRequest(&adminv1.StatusRequest{})); err != nil {
			t.Fatal(err)
		}
	}
	_, metrics := get(t, n, "/metrics")
	for _, want := range []string{`vigil_admin_calls_total{code="ok",method="Status"} 2`,
		`vigil_admin_call_duration_seconds_count{method="Status"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
