package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/admin/admintest"
	"github.com/vigil-mesh/vigil/node/alerts"
)

// testAlerts is the alert store of the newest adminNode.
var testAlerts *alerts.Store

type testAlertBackend struct{ st *alerts.Store }

func (b testAlertBackend) ListAlerts(q alerts.Query) ([]alerts.Alert, error) { return b.st.List(q) }
func (b testAlertBackend) AckAlert(id, who string) (alerts.Alert, error) {
	return b.st.Ack(id, who, time.Now())
}
func (b testAlertBackend) ResolveAlert(id, who string, fp bool) (alerts.Alert, error) {
	return b.st.Resolve(id, who, fp, time.Now())
}

// testAlertsConfig gives adminNode's admin server a real alert store, and its decisions.
func testAlertsConfig(t *testing.T, c *admin.Config) {
	st, err := alerts.Open(filepath.Join(t.TempDir(), "state"), alerts.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	testAlerts = st
	c.Alerts = testAlertBackend{st}
	testDecisions = admintest.StoreDecisions{Store: st}
	c.Decisions = testDecisions
}

func TestAlertsCmd(t *testing.T) {
	_, _, keyPath, sock := adminNode(t)
	now := time.Now()
	old, _ := testAlerts.Add(alerts.Alert{Agent: "planner-1", Model: "hst", Score: 0.9995, Evidence: "interval burst", Time: now.Add(-time.Hour), Action: "alert"})
	cpu, _ := testAlerts.Add(alerts.Alert{Agent: "planner-1", Model: "rule:cpu_usage > 80%", Score: 1, Evidence: "cpu_usage 95 > 80%", Time: now, Action: "alert"})
	testAlerts.Add(alerts.Alert{Agent: "other", Model: "capability", Score: 1, Time: now, Action: "alert"})
	flags := []string{"--socket", sock, "--key", keyPath}

	out, code := runAdmin(t, append([]string{"alerts", "list", "--agent", "planner-1"}, flags...)...)
	if code != exitOK || !strings.Contains(out, cpu.ID) || !strings.Contains(out, old.ID) || strings.Contains(out, "capability") {
		t.Fatalf("list --agent: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"alerts", "list", "--since", "10m", "-o", "json"}, flags...)...)
	var resp struct {
		Alerts []struct{ Id, Agent, Status string }
	}
	if code != exitOK || json.Unmarshal([]byte(out), &resp) != nil || len(resp.Alerts) != 2 || resp.Alerts[0].Status != "open" {
		t.Fatalf("list --since 10m -o json: %d %s", code, out)
	}
	if out, code = runAdmin(t, append([]string{"alerts", "ack", cpu.ID}, flags...)...); code != exitOK || !strings.Contains(out, "acknowledged by local") {
		t.Fatalf("ack: %d %s", code, out)
	}
	if out, code = runAdmin(t, append([]string{"alerts", "resolve", old.ID, "--false-positive"}, flags...)...); code != exitOK || !strings.Contains(out, "false positive: true") {
		t.Fatalf("resolve: %d %s", code, out)
	}
	if a, _ := testAlerts.Get(old.ID); a.Status != alerts.StatusResolved || !a.FalsePositive || a.ResolvedBy != "local" {
		t.Fatalf("stored after resolve: %+v", a)
	}
	out, code = runAdmin(t, append([]string{"alerts", "list", "--status", "acked"}, flags...)...)
	if code != exitOK || !strings.Contains(out, cpu.ID) || strings.Contains(out, old.ID) {
		t.Fatalf("list --status acked: %d %s", code, out)
	}
	if out, code := runAdmin(t, append([]string{"alerts", "resolve", old.ID}, flags...)...); code == exitOK || !strings.Contains(out, "already resolved") {
		t.Fatalf("second resolve: %d %s", code, out)
	}
	for _, args := range [][]string{
		{"alerts", "list", "--status", "closed"},
		{"alerts", "list", "--since", "yesterday"},
		{"alerts", "ack"},
		{"alerts", "resolve", "a", "b"},
	} {
		if out, code := runAdmin(t, append(args, flags...)...); code != exitUsage {
			t.Fatalf("%v: want exit %d, got %d: %s", args, exitUsage, code, out)
		}
	}
	out, code = runAdmin(t, append([]string{"decisions", "list"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "AGENT") {
		t.Fatalf("decisions list: %d %s", code, out)
	}
	if out, code = runAdmin(t, append([]string{"decisions", "list", "-o", "json"}, flags...)...); code != exitOK || !strings.Contains(out, "{") {
		t.Fatalf("decisions list -o json: %d %s", code, out)
	}
}
