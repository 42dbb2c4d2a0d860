package node

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/agent"
	"github.com/vigil-mesh/vigil/detector/engine"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

const detectPolicy = `monitoring:
  interval: 1s
  policies:
    - {metric: cpu_usage, threshold: 80%, action: alert}
threat_detection:
  share_threshold: 0.9
  models:
    - {type: anomaly_detection, algorithm: ngram, params: {online: true, baseline_sessions: 0}}
`

func listAlerts(t *testing.T, ac client.Client, req *adminv1.ListAlertsRequest) []*adminv1.Alert {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := ac.ListAlerts(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatalf("ListAlerts: %v", err)
	}
	return resp.Msg.Alerts
}

// TestDetectAlertsEndToEnd: a policy with a cpu_usage rule and an online n-gram model without
// a baseline is applied; an SDK agent's metric event raises a rule alert seen through the admin API; a burst
// of capabilities it never used raises a sequence alert; resolving it as a false positive
// reaches the engine's feedback; alerts survive a node restart.
func TestDetectAlertsEndToEnd(t *testing.T) {
	c := startE2ECluster(t, 1)
	n := c.nodes[0]
	c.propose(n, &identity.SetPolicy{Version: 1, Document: []byte(detectPolicy)})
	waitUntil(t, "detection to follow policy version 1", func() bool {
		n.detect.mu.Lock()
		defer n.detect.mu.Unlock()
		return n.detect.version == 1
	})
	caps := []string{"ask:planner", "tell:planner", "sum:planner", "del:planner", "fork:planner"}
	pk := c.registerWith("planner", caps, nil)
	planner := connectAgent(t, pk, n)
	planner.Handle("", func(context.Context, agent.Message) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if err := planner.Report(ctx, agent.Event{Kind: "metric", Name: "cpu_usage", Value: 95}); err != nil {
		t.Fatal(err)
	}
	ac, err := client.Dial(n.AdminAddr().String(), n.ID().Peer(), c.op)
	if err != nil {
		t.Fatal(err)
	}
	var rule *adminv1.Alert
	waitUntil(t, "a cpu_usage rule alert", func() bool {
		for _, a := range listAlerts(t, ac, &adminv1.ListAlertsRequest{Agent: "planner"}) {
			if strings.HasPrefix(a.Model, "rule:cpu_usage") {
				rule = a
				return true
			}
		}
		return false
	})
	if rule.Status != "open" || rule.Score != 1 || rule.Action != "alert" || !strings.Contains(rule.Evidence, "95") {
		t.Fatalf("rule alert: %+v", rule)
	}

	// Baseline: the same capability again and again; then a burst of ones never used.
	for range 40 {
		if _, err := planner.Send(ctx, "planner", "ask", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	burstStart := time.Now()
	for _, verb := range []string{"tell", "sum", "del", "fork"} {
		if _, err := planner.Send(ctx, "planner", verb, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	var model *adminv1.Alert
	waitUntil(t, "a sequence model alert after the burst", func() bool {
		for _, a := range listAlerts(t, ac, &adminv1.ListAlertsRequest{Agent: "planner"}) {
			if a.Model == "sequence:ngram" && !a.Time.AsTime().Before(burstStart.Add(-time.Millisecond)) {
				model = a
				return true
			}
		}
		return false
	})
	// Every send was allowed by the mesh ("ask" granted by "ask:planner"): none is a
	// capability violation.
	for _, a := range listAlerts(t, ac, &adminv1.ListAlertsRequest{Agent: "planner"}) {
		if a.Model == "capability" {
			t.Fatalf("an allowed send raised a capability alert: %+v", a)
		}
	}

	// Ack, then resolve as a false positive: recorded with who and when; the threshold rises.
	before := n.DetectionThreshold("planner", "sequence:ngram")
	if _, err := ac.AckAlert(ctx, connect.NewRequest(&adminv1.AckAlertRequest{Id: rule.Id})); err != nil {
		t.Fatal(err)
	}
	res, err := ac.ResolveAlert(ctx, connect.NewRequest(&adminv1.ResolveAlertRequest{Id: model.Id, FalsePositive: true}))
	if err != nil {
		t.Fatal(err)
	}
	if a := res.Msg.Alert; a.Status != "resolved" || !a.FalsePositive || a.ResolvedBy != c.op.ID().String() || a.ResolvedAt == nil {
		t.Fatalf("resolved: %+v", a)
	}
	if after := n.DetectionThreshold("planner", "sequence:ngram"); !(after > before) {
		t.Fatalf("false-positive feedback did not reach the engine: threshold %v → %v", before, after)
	}
	if _, err := ac.ResolveAlert(ctx, connect.NewRequest(&adminv1.ResolveAlertRequest{Id: model.Id})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("second resolve: %v", err)
	}
	if _, err := ac.AckAlert(ctx, connect.NewRequest(&adminv1.AckAlertRequest{Id: "0000000000ffffff"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("ack of an unknown id: %v", err)
	}
	if got := listAlerts(t, ac, &adminv1.ListAlertsRequest{Status: "acked"}); len(got) != 1 || got[0].Id != rule.Id || got[0].AckedBy != c.op.ID().String() {
		t.Fatalf("acked filter: %+v", got)
	}
	if _, err := ac.ListAlerts(ctx, connect.NewRequest(&adminv1.ListAlertsRequest{Status: "closed"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("bad status filter: %v", err)
	}
	total := len(listAlerts(t, ac, &adminv1.ListAlertsRequest{}))

	// Restart: the alerts, their status and the raised threshold survive.
	planner.Close()
	c.stop(0)
	n = c.start(0)
	waitUntil(t, "detection to follow policy version 1 after the restart", func() bool {
		n.detect.mu.Lock()
		defer n.detect.mu.Unlock()
		return n.detect.version == 1
	})
	ac, err = client.Dial(n.AdminAddr().String(), n.ID().Peer(), c.op)
	if err != nil {
		t.Fatal(err)
	}
	got := listAlerts(t, ac, &adminv1.ListAlertsRequest{})
	if len(got) != total {
		t.Fatalf("after restart %d alerts, before %d", len(got), total)
	}
	found := false
	for _, a := range got {
		if a.Id == model.Id {
			found = a.Status == "resolved" && a.FalsePositive
		}
	}
	if !found {
		t.Fatalf("resolved alert lost its state across the restart: %+v", got)
	}
	if th := n.DetectionThreshold("planner", "sequence:ngram"); !(th > before) {
		t.Fatalf("threshold after restart %v, want the raised one (> %v)", th, before)
	}
}

// TestDetectAlertSharedAsSignal: with gossip on, an alert whose score reaches share_threshold is
// signed and counted as an anomaly signal, the policy's response section (dry_run) reaches the
// aggregation, and the decision is listed by the admin API.
func TestDetectAlertSharedAsSignal(t *testing.T) {
	c := startE2EClusterYAML(t, 1, gossipYAML)
	n := c.nodes[0]
	c.propose(n, &identity.SetPolicy{Version: 1, Document: []byte(`monitoring:
  policies:
    - {metric: cpu_usage, threshold: 80%, action: alert}
threat_detection:
  share_threshold: 0.9
  models:
    - {type: anomaly_detection, algorithm: hst}
response:
  dry_run: true
`)})
	waitUntil(t, "detection to follow policy version 1", func() bool {
		n.detect.mu.Lock()
		defer n.detect.mu.Unlock()
		return n.detect.version == 1
	})
	pk := c.registerWith("worker", nil, nil)
	w := connectAgent(t, pk, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Report(ctx, agent.Event{Kind: "metric", Name: "cpu_usage", Value: 50}); err != nil {
		t.Fatal(err)
	}
	if err := w.Report(ctx, agent.Event{Kind: "metric", Name: "cpu_usage", Value: 99}); err != nil {
		t.Fatal(err)
	}
	ac, err := client.Dial(n.AdminAddr().String(), n.ID().Peer(), c.op)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the shared alert", func() bool {
		as := listAlerts(t, ac, &adminv1.ListAlertsRequest{Agent: "worker"})
		return len(as) == 1 && as[0].Shared
	})
	var d *adminv1.Decision
	waitUntil(t, "a decision about worker", func() bool {
		resp, err := ac.ListDecisions(ctx, connect.NewRequest(&adminv1.ListDecisionsRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range resp.Msg.Decisions {
			if x.Agent == "worker" {
				d = x
				return true
			}
		}
		return false
	})
	if d.Action != "alert" || !d.DryRun || d.Reporters != 1 || d.MaxScore != 1 {
		t.Fatalf("decision: %+v", d)
	}
	// The alert is counted on /metrics.
	resp, err := http.Get("http://" + n.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `vigil_alerts_total{action="alert",model="rule"} 1`) {
		t.Fatalf("metrics lack the alert count:\n%s", grepLines(string(body), "vigil_alerts_total"))
	}

	// A policy whose model params the catalog refuses: logged, the running engine is kept.
	c.propose(n, &identity.SetPolicy{Version: 2, Document: []byte(`threat_detection:
  models:
    - {type: anomaly_detection, algorithm: hst, params: {trees: 0}}
`)})
	waitUntil(t, "detection to see policy version 2", func() bool {
		n.detect.mu.Lock()
		defer n.detect.mu.Unlock()
		return n.detect.version == 2
	})
	n.detect.mu.Lock()
	rulesKept := n.detect.doc.Monitoring.Policies
	n.detect.mu.Unlock()
	if len(rulesKept) != 1 || rulesKept[0].Metric != "cpu_usage" {
		t.Fatalf("a policy that does not build replaced the running one: %+v", rulesKept)
	}

	n.gossip.mu.Lock()
	got := n.gossip.agg.Config()
	n.gossip.mu.Unlock()
	if !got.DryRun || len(got.Ladder) != 4 {
		t.Fatalf("aggregation config from the policy: %+v", got)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestDetectLSTMBaselineEndToEnd: with an lstm policy and a baseline of 20 sessions, an agent's
// first 20 sessions (separated by pauses longer than session_gap) are the baseline and raise no
// sequence alert; the node fits the model off its telemetry path and says so on /metrics; then
// a session with actions the agent never used raises a sequence:lstm alert through the admin
// API. After a restart the fitted model is back at once (no new baseline) and still alerts.
func TestDetectLSTMBaselineEndToEnd(t *testing.T) {
	c := startE2ECluster(t, 1)
	n := c.nodes[0]
	c.propose(n, &identity.SetPolicy{Version: 1, Document: []byte(`threat_detection:
  models:
    - {type: anomaly_detection, algorithm: lstm, params: {hidden: 16, baseline_sessions: 20, session_gap: 300ms}}
`)})
	phase := func(n *Node) engine.Phase {
		n.detect.mu.Lock()
		defer n.detect.mu.Unlock()
		if n.detect.version != 1 {
			return engine.PhaseNone
		}
		return n.detect.eng.SequenceStatus().Phase
	}
	waitUntil(t, "detection to follow policy version 1, in its baseline", func() bool { return phase(n) == engine.PhaseBaseline })
	caps := []string{"ask:planner", "tell:planner", "sum:planner", "del:planner", "fork:planner"}
	pk := c.registerWith("planner", caps, nil)
	planner := connectAgent(t, pk, n)
	planner.Handle("", func(context.Context, agent.Message) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	send := func(p *agent.Client, verbs ...string) {
		t.Helper()
		for _, v := range verbs {
			if _, err := p.Send(ctx, "planner", v, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	ac, err := client.Dial(n.AdminAddr().String(), n.ID().Peer(), c.op)
	if err != nil {
		t.Fatal(err)
	}
	seqAlert := func(ac client.Client, since time.Time) *adminv1.Alert {
		for _, a := range listAlerts(t, ac, &adminv1.ListAlertsRequest{Agent: "planner"}) {
			if strings.HasPrefix(a.Model, "sequence:") && !a.Time.AsTime().Before(since) {
				return a
			}
		}
		return nil
	}

	start := time.Now()
	for i := range 20 {
		if i%2 == 0 {
			send(planner, "ask", "tell", "sum")
		} else {
			send(planner, "ask", "sum", "tell", "sum")
		}
		time.Sleep(450 * time.Millisecond) // > session_gap: the session ends
	}
	waitUntil(t, "the baseline to complete and the model to be fitted", func() bool { return phase(n) == engine.PhaseFitted })
	if a := seqAlert(ac, start.Add(-time.Second)); a != nil {
		t.Fatalf("a sequence alert during the baseline: %+v", a)
	}
	resp, err := http.Get("http://" + n.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `vigil_detect_sequence_phase{phase="fitted"} 1`) ||
		!strings.Contains(string(body), `vigil_detect_sequence_phase{phase="baseline"} 0`) {
		t.Fatalf("metrics lack the fitted phase:\n%s", grepLines(string(body), "vigil_detect_sequence_phase"))
	}

	// A normal session, then one with capabilities the agent holds but never used.
	send(planner, "ask", "tell", "sum")
	time.Sleep(450 * time.Millisecond)
	odd := time.Now()
	send(planner, "del", "fork")
	var alert *adminv1.Alert
	waitUntil(t, "a sequence:lstm alert on the unusual session", func() bool { alert = seqAlert(ac, odd.Add(-time.Millisecond)); return alert != nil })
	if alert.Model != "sequence:lstm" || !strings.Contains(alert.Evidence, "del") {
		t.Fatalf("alert: %+v", alert)
	}
	if a := seqAlert(ac, start.Add(-time.Second)); a.Id != alert.Id {
		t.Fatalf("the normal session after the fit alerted: %+v", a)
	}

	// Restart: the fitted model is restored, not a new baseline, and still judges.
	planner.Close()
	c.stop(0)
	n = c.start(0)
	if p := phase(n); p != engine.PhaseFitted {
		// The engine follows the replayed policy within a tick of the start.
		waitUntil(t, "detection to follow policy version 1 after the restart", func() bool { return phase(n) != engine.PhaseNone })
		if p = phase(n); p != engine.PhaseFitted {
			t.Fatalf("after the restart the sequence model is in phase %s, want fitted", p)
		}
	}
	ac, err = client.Dial(n.AdminAddr().String(), n.ID().Peer(), c.op)
	if err != nil {
		t.Fatal(err)
	}
	planner = connectAgent(t, pk, n)
	defer planner.Close()
	planner.Handle("", func(context.Context, agent.Message) error { return nil })
	again := time.Now()
	send(planner, "fork")
	waitUntil(t, "a sequence:lstm alert after the restart", func() bool { return seqAlert(ac, again.Add(-time.Millisecond)) != nil })
}
