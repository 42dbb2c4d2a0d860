package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/agent"
	"github.com/vigil-mesh/vigil/agent/monitor"
	"github.com/vigil-mesh/vigil/gossip/response"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/alerts"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

// TestGossipThrottle: anomaly signals push an agent to the throttle step of the policy's
// ladder; its node then refuses its sends beyond throttle_rate (after a burst of
// throttle_burst) with code throttled, through the SDK and the sidecar (429), counts them in
// telemetry and metrics, and keeps the agent attached; once throttle_ttl has passed it sends
// freely again.
func TestGossipThrottle(t *testing.T) {
	c := startE2EClusterYAML(t, 1, gossipYAML)
	n := c.nodes[0]
	// Detection off, so only the signals below drive the ladder; one message a minute makes
	// "beyond the rate" independent of how fast this machine sends.
	c.propose(n, &identity.SetPolicy{Version: 1, Document: []byte(`allow_disabled: true
monitoring: {enabled: false}
threat_detection: {enabled: false}
response:
  ladder: [alert, throttle]
  throttle_rate: 1/m
  throttle_burst: 2
  throttle_ttl: 4s
`)})
	waitUntil(t, "the response section to apply", func() bool {
		n.gossip.mu.Lock()
		defer n.gossip.mu.Unlock()
		cfg := n.gossip.agg.Config()
		return cfg.ThrottleTTL == 4*time.Second && cfg.ThrottleBurst == 2
	})
	sk := c.registerWith("chatty", []string{"ask:helper"}, nil)
	hk := c.registerWith("helper", nil, nil)
	sender := connectAgent(t, sk, n)
	helper := connectAgent(t, hk, n)
	helper.Handle("ask", func(context.Context, agent.Message) error { return nil })
	waitAttached(t, n, hk)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	send := func() error {
		_, err := sender.Send(ctx, "helper", "ask", []byte("hi"))
		return err
	}
	for i := range 5 {
		if err := send(); err != nil {
			t.Fatalf("send %d before any signal: %v", i, err)
		}
	}

	ev := sha256.Sum256([]byte("bursty"))
	for range 3 { // the default ladder throttles at 3 signals from 1 reporter
		if err := n.ReportAnomaly("chatty", "ngram", 0.95, ev); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := n.Decisions(alerts.DecisionQuery{Agent: "chatty", Action: "throttle", Limit: 1})
	if err != nil || len(ds) != 1 {
		t.Fatalf("throttle decisions: %v %+v", err, ds)
	}
	d := ds[0]
	if d.Rate != 1.0/60 || d.Burst != 2 || d.Until.IsZero() {
		t.Fatalf("decision after three signals: %+v", d)
	}

	for i := range 2 { // the burst
		if err := send(); err != nil {
			t.Fatalf("send %d within the burst: %v", i, err)
		}
	}
	err = send()
	re := wantRefused(t, err, agentproto.CodeThrottled, "sender-node", "response: throttled at 0.01667 msg/s until ")
	if !errors.Is(err, agent.ErrThrottled) || !strings.Contains(re.Reason, "next send is allowed in") {
		t.Fatalf("throttled refusal: %+v", re)
	}
	// The sidecar says 429 for the same refusal.
	mon, err := monitor.New(sender, monitor.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	w := httptest.NewRecorder()
	mon.ServeHTTP(w, httptest.NewRequest("POST", "/v1/messages", strings.NewReader(`{"to":"helper","capability":"ask","body":"hi"}`)))
	if w.Code != 429 || !strings.Contains(w.Body.String(), `"code":"throttled"`) {
		t.Fatalf("sidecar: %d %s", w.Code, w.Body.String())
	}
	// Still attached, never cut off.
	if !n.Router().Attached(sk.ID().Peer()) || sender.Registration().Status != "active" {
		t.Fatal("the throttled agent lost its session")
	}
	select {
	case e := <-sender.Notify():
		if e.State == agent.StateCutOff {
			t.Fatalf("the throttled agent was cut off: %+v", e)
		}
	default:
	}
	recs := n.Telemetry().Query(telemetry.Query{Agent: "chatty"})
	throttled := 0
	for _, r := range recs {
		if r.Kind == telemetry.KindSend && r.Outcome == agentproto.CodeThrottled {
			throttled++
		}
	}
	if throttled != 2 {
		t.Fatalf("%d throttled sends in telemetry, want 2", throttled)
	}
	_, metrics := get(t, n, "/metrics")
	for _, want := range []string{`vigil_agent_messages_total{kind="send",outcome="throttled"} 2`, "vigil_agent_throttled 1",
		`vigil_response_decisions_total{action="throttle"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(metrics, "throttle"))
		}
	}

	// After throttle_ttl the agent sends freely again.
	time.Sleep(time.Until(d.Until))
	for i := range 10 {
		if err := send(); err != nil {
			t.Fatalf("send %d after the throttle ended: %v", i, err)
		}
	}
	if n.Router().ThrottledCount() != 0 {
		t.Fatal("the ended throttle is still counted")
	}

	// An operator's lift ends a running throttle at once, and is recorded as a lift of it.
	if err := n.Router().Throttle(sk.ID().Peer(), d.Rate, d.Burst, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	lift, err := n.LiftDecision("chatty", "", "operator-1", "tuning the ladder")
	if err != nil || lift.Lifted != "throttle" || lift.Action != alerts.ActionLift {
		t.Fatalf("lift: %v %+v", err, lift)
	}
	if _, ok := n.Router().Throttled(sk.ID().Peer()); ok {
		t.Fatal("the lift left the throttle running")
	}
	if _, err := n.LiftDecision("chatty", "", "operator-1", "again"); !errors.Is(err, response.ErrNothingToLift) {
		t.Fatalf("second lift: %v", err)
	}
	for i := range 5 {
		if err := send(); err != nil {
			t.Fatalf("send %d after the lift: %v", i, err)
		}
	}
}

// TestPolicyRevokeQuorumFloor: a policy that names response.revoke_quorum raises the quorum this
// node waits for before it proposes an automated revocation above the registry's, also across
// signals (which re-read the registry); one that does not name it follows the registry.
func TestPolicyRevokeQuorumFloor(t *testing.T) {
	c := startE2EClusterYAML(t, 1, gossipYAML)
	n := c.nodes[0]
	quorum := func() int {
		n.gossip.mu.Lock()
		defer n.gossip.mu.Unlock()
		return n.gossip.agg.Config().RevokeQuorum
	}
	c.propose(n, &identity.SetPolicy{Version: 1, Document: []byte("response: {revoke_quorum: 3}\n")})
	waitUntil(t, "the policy's revoke_quorum to apply", func() bool { return quorum() == 3 })
	c.registerWith("watched", nil, nil)
	if err := n.ReportAnomaly("watched", "ngram", 0.95, sha256.Sum256([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if q := quorum(); q != 3 {
		t.Fatalf("after a signal the quorum is %d, want the policy's 3 (registry %d)", q, identity.DefaultRevokeQuorum)
	}
	c.propose(n, &identity.SetPolicy{Version: 2, Document: []byte("response: {dry_run: false}\n")})
	waitUntil(t, "the registry's quorum again", func() bool {
		if err := n.ReportAnomaly("watched", "ngram", 0.95, sha256.Sum256([]byte("y"))); err != nil {
			t.Fatal(err)
		}
		return quorum() == identity.DefaultRevokeQuorum
	})
}
