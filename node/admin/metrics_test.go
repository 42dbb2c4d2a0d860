package admin_test

import (
	"maps"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// TestCallMetrics counts allowed, denied and failed calls by method and code, and times them.
func TestCallMetrics(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	cfg := admin.DefaultConfig()
	cfg.Key, cfg.Logger, cfg.Metrics = e.nodeKey, testLogger(t), reg
	srv := admin.NewServer(e.node, cfg)
	sock := filepath.Join(t.TempDir(), "m.sock")
	if err := srv.ServeUnix(sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	c := client.DialUnix(sock)
	for range 3 {
		if _, err := c.Status(ctxT(t), connect.NewRequest(&adminv1.StatusRequest{})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.GetAgent(ctxT(t), connect.NewRequest(&adminv1.GetAgentRequest{Name: "nobody"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("GetAgent nobody: %v", err)
	}
	// Signed by a stranger: refused, and still counted under its code.
	_ = call(ctxT(t), c, "RevokeAgent", e.signed(&identity.RevokeAgent{Name: "good"}, mustKey(t)).Encode())

	calls, hists := map[string]float64{}, map[string]uint64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "vigil_admin_calls_total":
				calls[labels["method"]+" "+labels["code"]] = m.GetCounter().GetValue()
			case "vigil_admin_call_duration_seconds":
				hists[labels["method"]] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	wantCalls := map[string]float64{"Status ok": 3, "GetAgent not_found": 1, "RevokeAgent permission_denied": 1}
	if !maps.Equal(calls, wantCalls) {
		t.Errorf("vigil_admin_calls_total = %v, want %v", calls, wantCalls)
	}
	wantHists := map[string]uint64{"Status": 3, "GetAgent": 1, "RevokeAgent": 1}
	if !maps.Equal(hists, wantHists) {
		t.Errorf("vigil_admin_call_duration_seconds counts = %v, want %v", hists, wantHists)
	}
	// A second server on the same registry is a configuration error, reported by Serve.
	dup := admin.NewServer(e.node, cfg)
	if err := dup.ServeUnix(filepath.Join(t.TempDir(), "d.sock")); err == nil {
		t.Fatal("duplicate metrics registration accepted")
	}
}
