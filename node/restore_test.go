package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/alerts"
	"github.com/vigil-mesh/vigil/node/config"
	"github.com/vigil-mesh/vigil/node/enforce"
)

// TestRunningResponses: the stored decisions are replayed in the order they were taken, per
// agent key, as the gossip layer carried them out; what still runs at now is restored.
func TestRunningResponses(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	keyA, keyB := newTestID(t), newTestID(t)
	// Decisions are taken 10 minutes before now unless at() moves them.
	taken := now.Add(-10 * time.Minute)
	q := func(a identity.ID, until time.Duration) alerts.Decision {
		return alerts.Decision{Time: taken, Agent: "a", AgentID: a.String(), Action: "quarantine", Until: now.Add(until)}
	}
	th := func(a identity.ID, until time.Duration) alerts.Decision {
		return alerts.Decision{Time: taken, Agent: "a", AgentID: a.String(), Action: "throttle", Until: now.Add(until), Rate: 0.5, Burst: 3}
	}
	at := func(d alerts.Decision, ago time.Duration) alerts.Decision { d.Time = now.Add(-ago); return d }
	other := func(a identity.ID, action string) alerts.Decision {
		d := alerts.Decision{Agent: "a", AgentID: a.String(), Action: action}
		if action == alerts.ActionLift {
			d.By, d.Reason = "local", "x"
		}
		return d
	}
	dry := func(d alerts.Decision) alerts.Decision { d.DryRun = true; return d }
	named := func(d alerts.Decision, name string) alerts.Decision { d.Agent = name; return d }
	// want: one entry per restored agent key, "Q<seconds>" and/or "T<seconds>" left at now.
	type want map[identity.ID]string
	for _, c := range []struct {
		name  string
		taken []alerts.Decision // oldest first
		want  want
		bad   int // problems reported
	}{
		{"nothing stored", nil, want{}, 0},
		{"a running quarantine", []alerts.Decision{q(keyA, 30*time.Second)}, want{keyA: "Q30"}, 0},
		{"an ended quarantine", []alerts.Decision{q(keyA, -time.Second)}, want{}, 0},
		{"ends exactly now", []alerts.Decision{q(keyA, 0), th(keyB, 0)}, want{}, 0},
		{"a running throttle", []alerts.Decision{th(keyA, 10*time.Second)}, want{keyA: "T10"}, 0},
		{"an ended throttle", []alerts.Decision{th(keyA, -time.Minute)}, want{}, 0},
		{"quarantine then lift", []alerts.Decision{q(keyA, time.Minute), other(keyA, alerts.ActionLift)}, want{}, 0},
		{"quarantine, throttle, lift", []alerts.Decision{q(keyA, time.Minute), th(keyA, time.Minute), other(keyA, alerts.ActionLift)}, want{}, 0},
		{"lift, then a new quarantine", []alerts.Decision{q(keyA, time.Minute), other(keyA, alerts.ActionLift), q(keyA, 2*time.Minute)}, want{keyA: "Q120"}, 0},
		{"quarantine renewed: the newest until", []alerts.Decision{q(keyA, time.Minute), q(keyA, 5*time.Minute)}, want{keyA: "Q300"}, 0},
		{"quarantine renewed after expiry", []alerts.Decision{q(keyA, -time.Minute), q(keyA, 20*time.Second)}, want{keyA: "Q20"}, 0},
		{"a throttle after a quarantine does not end it", []alerts.Decision{q(keyA, time.Minute), th(keyA, 2*time.Minute)}, want{keyA: "Q60 T120"}, 0},
		{"a quarantine supersedes a throttle", []alerts.Decision{th(keyA, 2*time.Minute), q(keyA, time.Minute)}, want{keyA: "Q60"}, 0},
		{"an ended quarantine still ended the throttle", []alerts.Decision{th(keyA, 2*time.Minute), q(keyA, -time.Second)}, want{}, 0},
		{"a renewal of a running quarantine leaves the throttle", []alerts.Decision{at(q(keyA, time.Minute), 5*time.Minute), at(th(keyA, 3*time.Minute), 4*time.Minute), at(q(keyA, 2*time.Minute), 3*time.Minute)}, want{keyA: "Q120 T180"}, 0},
		{"a quarantine after the last one ended ends the throttle", []alerts.Decision{at(q(keyA, -4*time.Minute), 5*time.Minute), at(th(keyA, 3*time.Minute), 4*time.Minute), at(q(keyA, 2*time.Minute), 3*time.Minute)}, want{keyA: "Q120"}, 0},
		{"alert and revoke change nothing", []alerts.Decision{q(keyA, time.Minute), other(keyA, "alert"), other(keyA, "revoke")}, want{keyA: "Q60"}, 0},
		{"dry run is not restored", []alerts.Decision{dry(q(keyA, time.Minute)), dry(th(keyB, time.Minute))}, want{}, 0},
		{"a dry-run step does not supersede", []alerts.Decision{q(keyA, time.Minute), dry(q(keyA, 5*time.Minute))}, want{keyA: "Q60"}, 0},
		{"per key: a lift of one key leaves the other", []alerts.Decision{q(keyA, time.Minute), named(q(keyB, time.Minute), "b"), other(keyA, alerts.ActionLift)}, want{keyB: "Q60"}, 0},
		{"same name, new key: keyed by the key", []alerts.Decision{q(keyA, time.Minute), q(keyB, 2*time.Minute), other(keyB, alerts.ActionLift)}, want{keyA: "Q60"}, 0},
		{"a bad agent ID is skipped and reported", []alerts.Decision{{Agent: "x", AgentID: "not-an-id", Action: "quarantine", Until: now.Add(time.Minute)}, q(keyA, time.Minute)}, want{keyA: "Q60"}, 1},
		{"a throttle without rate and burst is skipped and reported", []alerts.Decision{{Agent: "a", AgentID: keyA.String(), Action: "throttle", Until: now.Add(time.Minute)}}, want{}, 1},
		{"a quarantine without until is skipped and reported", []alerts.Decision{{Agent: "a", AgentID: keyA.String(), Action: "quarantine"}}, want{}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			ds := slices.Clone(c.taken)
			for i := range ds {
				ds[i].ID = fmt.Sprintf("%016x", i+1)
			}
			slices.Reverse(ds) // ListDecisions: newest first
			got, problems := runningResponses(ds, now)
			if len(problems) != c.bad {
				t.Fatalf("problems %v, want %d", problems, c.bad)
			}
			gotm := want{}
			for _, r := range got {
				var parts []string
				if !r.QuarantineUntil.IsZero() {
					parts = append(parts, fmt.Sprintf("Q%d", int(r.QuarantineUntil.Sub(now).Seconds())))
					if r.QuarantineID == "" {
						t.Errorf("%s: quarantine without its decision ID", r.Peer)
					}
				}
				if !r.Throttle.Until.IsZero() {
					parts = append(parts, fmt.Sprintf("T%d", int(r.Throttle.Until.Sub(now).Seconds())))
					if r.Throttle.Rate != 0.5 || r.Throttle.Burst != 3 || r.Throttle.Peer != r.Peer || r.ThrottleID == "" {
						t.Errorf("%s: throttle %+v (decision %q)", r.Peer, r.Throttle, r.ThrottleID)
					}
				}
				id, err := identity.ParseID(r.Peer.String())
				if err != nil {
					t.Fatal(err)
				}
				gotm[id] = strings.Join(parts, " ")
			}
			if fmt.Sprint(gotm) != fmt.Sprint(c.want) {
				t.Fatalf("restored %v, want %v", gotm, c.want)
			}
		})
	}
}

// TestRestoredThrottles: only the entries with a throttle give the router one.
func TestRestoredThrottles(t *testing.T) {
	a, b := newTestID(t), newTestID(t)
	until := time.Now().Add(time.Minute)
	got := restoredThrottles([]runningResponse{
		{Peer: a.Peer(), QuarantineUntil: until},
		{Peer: b.Peer(), Throttle: agentproto.ThrottleSpec{Peer: b.Peer(), Rate: 1, Burst: 2, Until: until}},
	})
	if len(got) != 1 || got[0].Peer != b.Peer() || got[0].Rate != 1 || got[0].Burst != 2 || !got[0].Until.Equal(until) {
		t.Fatalf("throttles %+v", got)
	}
}

func newTestID(t testing.TB) identity.ID {
	t.Helper()
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID()
}

// restorePolicy turns detection off, so only the test's signals drive the ladder, and stops it
// at quarantine (two reporters), so nothing is revoked.
func restorePolicy(version uint64, quarantineTTL, throttleTTL string) *identity.SetPolicy {
	return &identity.SetPolicy{Version: version, Document: []byte(`allow_disabled: true
monitoring: {enabled: false}
threat_detection: {enabled: false}
response:
  ladder: [alert, throttle, quarantine]
  quarantine_ttl: ` + quarantineTTL + `
  throttle_ttl: ` + throttleTTL + `
  throttle_rate: 1/m
  throttle_burst: 2
`)}
}

// waitResponseTTL waits until every running node's aggregator follows a policy whose
// quarantine_ttl is ttl.
func (c *e2eCluster) waitResponseTTL(ttl time.Duration) {
	c.tb.Helper()
	for _, n := range c.nodes {
		if n == nil {
			continue
		}
		waitUntil(c.tb, n.cfg.Node.Name+" to follow quarantine_ttl "+ttl.String(), func() bool {
			n.gossip.mu.Lock()
			defer n.gossip.mu.Unlock()
			return n.gossip.agg.Config().QuarantineTTL == ttl
		})
	}
}

// TestGossipResponseSurvivesRestart: a node that restarts keeps enforcing the local quarantines
// and throttles it decided before, for the time they had left, and nothing else. On node-2,
// "held" and "later" are quarantined and "chatty" throttled when it stops; "lifted" was
// quarantined and lifted by an operator, and "early"'s short quarantine had ended. Right after
// the restart node-2 refuses "held" and "later" (a real attach fails), throttles "chatty" with
// the stored rate, burst and end, admits "lifted" and "early", and says so on /metrics. An
// operator can lift a restored quarantine ("later"). Once the quarantine and the throttle
// reach their stored end, "held" attaches again and "chatty" is no longer throttled.
func TestGossipResponseSurvivesRestart(t *testing.T) {
	c := startE2EClusterYAML(t, 2, gossipYAML)
	c.joinGossip()
	n1, n2 := c.nodes[0], c.nodes[1]
	ev := sha256.Sum256([]byte("restore"))
	quarantine := func(name string, k identity.PrivateKey) {
		t.Helper()
		for _, n := range c.nodes {
			if err := n.ReportAnomaly(name, "ngram", 0.9, ev); err != nil {
				t.Fatal(err)
			}
		}
		waitUntil(t, "node-2 to quarantine "+name, func() bool {
			return c.nodes[1].gater.Decide(k.ID().Peer()) == enforce.ReasonQuarantined
		})
	}

	// "early": quarantined for one second, over before the restart.
	c.propose(n1, restorePolicy(1, "1s", "1s"))
	c.waitResponseTTL(time.Second)
	early := c.register("early")
	quarantine("early", early)
	waitUntil(t, "early's quarantine to end", func() bool { return n2.gater.Decide(early.ID().Peer()) == enforce.ReasonAgent })

	const ttl = 20 * time.Second
	c.propose(n1, restorePolicy(2, ttl.String(), ttl.String()))
	c.waitResponseTTL(ttl)
	held, later, lifted, chatty := c.register("held"), c.register("later"), c.register("lifted"), c.register("chatty")
	quarantine("held", held)
	quarantine("later", later)
	quarantine("lifted", lifted)
	if _, err := n2.LiftDecision("lifted", "", "operator-1", "false alarm"); err != nil {
		t.Fatal(err)
	}
	for range 3 { // one reporter, three signals: the throttle step
		if err := n2.ReportAnomaly("chatty", "ngram", 0.9, ev); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(name, action string) alerts.Decision {
		t.Helper()
		ds, err := c.nodes[1].Decisions(alerts.DecisionQuery{Agent: name, Action: action, Limit: 1})
		if err != nil || len(ds) != 1 || ds[0].Until.IsZero() {
			t.Fatalf("node-2's %s decision for %s: %+v %v", action, name, ds, err)
		}
		return ds[0]
	}
	heldQ, laterQ, chattyT := stored("held", "quarantine"), stored("later", "quarantine"), stored("chatty", "throttle")
	if _, ok := n2.Router().Throttled(chatty.ID().Peer()); !ok {
		t.Fatal("chatty is not throttled before the restart")
	}

	c.stop(1)
	n2 = c.start(1)
	if left := time.Until(heldQ.Until); left < 5*time.Second {
		t.Fatalf("the restart took too long: %s of the quarantine left to check", left)
	}
	for _, k := range []struct {
		name string
		key  identity.PrivateKey
		want enforce.Reason
	}{
		{"held", held, enforce.ReasonQuarantined}, {"later", later, enforce.ReasonQuarantined},
		{"lifted", lifted, enforce.ReasonAgent}, {"early", early, enforce.ReasonAgent}, {"chatty", chatty, enforce.ReasonAgent},
	} {
		if r := n2.gater.Decide(k.key.ID().Peer()); r != k.want {
			t.Errorf("after the restart node-2 decides %s for %s, want %s", r, k.name, k.want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	attach := func(k identity.PrivateKey) error {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		defer acancel()
		_, err := agentproto.Attach(actx, newAgentHost(t, k), addrInfo(n2))
		return err
	}
	if err := attach(held); err == nil {
		t.Fatal("held attached to node-2 right after the restart: its quarantine was forgotten")
	}
	if err := attach(lifted); err != nil {
		t.Fatalf("the lifted agent cannot attach after the restart: %v", err)
	}
	th, ok := n2.Router().Throttled(chatty.ID().Peer())
	if !ok || th.Rate != 1.0/60 || th.Burst != 2 || !th.Until.Equal(chattyT.Until) {
		t.Fatalf("chatty's throttle after the restart: %+v %v, want 1/60 msg/s, burst 2, until %s", th, ok, chattyT.Until)
	}
	_, metrics := get(t, n2, "/metrics")
	for _, want := range []string{`vigil_response_restored_total{action="quarantine"} 2`, `vigil_response_restored_total{action="throttle"} 1`,
		"vigil_response_quarantined 2", "vigil_agent_throttled 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(metrics, "vigil_response"))
		}
	}

	// A restored quarantine is lifted like any other: named by its stored decision.
	lift, err := n2.LiftDecision("later", "", "operator-1", "checked by hand")
	if err != nil || lift.Lifted != "quarantine" || lift.LiftedID != laterQ.ID {
		t.Fatalf("lift of the restored quarantine: %+v %v (want lifted_id %s)", lift, err, laterQ.ID)
	}
	if r := n2.gater.Decide(later.ID().Peer()); r != enforce.ReasonAgent {
		t.Fatalf("after the lift node-2 decides %s for later", r)
	}

	// The restored quarantine and throttle end when the stored decisions said.
	if r := n2.gater.Decide(held.ID().Peer()); r != enforce.ReasonQuarantined {
		t.Fatalf("held before its stored end: %s", r)
	}
	time.Sleep(time.Until(heldQ.Until))
	waitUntil(t, "held's restored quarantine to end", func() bool { return n2.gater.Decide(held.ID().Peer()) == enforce.ReasonAgent })
	if err := attach(held); err != nil {
		t.Fatalf("held cannot attach once its quarantine ended: %v", err)
	}
	time.Sleep(time.Until(chattyT.Until))
	if _, ok := n2.Router().Throttled(chatty.ID().Peer()); ok {
		t.Fatal("chatty is still throttled after its stored end")
	}
	_, metrics = get(t, n2, "/metrics")
	if !strings.Contains(metrics, "vigil_response_quarantined 0") {
		t.Errorf("/metrics after the ends:\n%s", grepLines(metrics, "vigil_response_quarantined"))
	}
}

// crashChildEnv names the node configuration file TestGossipThrottleSurvivesKill's child
// process runs a node from.
const crashChildEnv = "VIGIL_TEST_CRASH_NODE_CONFIG"

// TestGossipThrottleSurvivesKill: a node process decides a throttle and is killed at once
// (SIGKILL: no Close, no flush of any kind); the node started again from the same data
// directory throttles the agent with the stored rate, burst and end, and an operator can lift
// it there. The decision was on disk before it was carried out.
func TestGossipThrottleSurvivesKill(t *testing.T) {
	if file := os.Getenv(crashChildEnv); file != "" {
		throttleAndWait(t, file)
		return
	}
	c := startE2EClusterYAML(t, 1, gossipYAML)
	c.propose(c.nodes[0], restorePolicy(1, "1h", "1h"))
	c.waitResponseTTL(time.Hour)
	k := c.register("chatty")
	c.stop(0)

	cmd := exec.Command(os.Args[0], "-test.run=^TestGossipThrottleSurvivesKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+filepath.Join(c.cfgs[0].Node.DataDir, "node.yaml"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = cmd.Process.Kill() // SIGKILL
			_ = cmd.Wait()
		}
	}
	t.Cleanup(kill)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var id string
	var seen []string
	timeout := time.After(60 * time.Second)
	for id == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				kill()
				t.Fatalf("the node process ended before it throttled:\n%s\n%s", strings.Join(seen, "\n"), stderr.String())
			}
			seen = append(seen, l)
			id, _ = strings.CutPrefix(l, "THROTTLED ")
		case <-timeout:
			kill()
			t.Fatalf("the node process did not throttle in time:\n%s\n%s", strings.Join(seen, "\n"), stderr.String())
		}
	}
	kill()
	go func() { // drain what the killed process left in the pipe
		for range lines {
		}
	}()

	n := c.start(0)
	d, err := n.state.GetDecision(id)
	if err != nil || d.Action != "throttle" {
		t.Fatalf("decision %s after the kill: %+v %v", id, d, err)
	}
	th, ok := n.Router().Throttled(k.ID().Peer())
	if !ok || th.Rate != 1.0/60 || th.Burst != 2 || !th.Until.Equal(d.Until) {
		t.Fatalf("throttle after the kill: %+v %v, want the stored %v msg/s, burst %d, until %s", th, ok, d.Rate, d.Burst, d.Until)
	}
	_, metrics := get(t, n, "/metrics")
	if !strings.Contains(metrics, `vigil_response_restored_total{action="throttle"} 1`) {
		t.Errorf("/metrics:\n%s", grepLines(metrics, "vigil_response_restored"))
	}
	lift, err := n.LiftDecision("chatty", "", "operator-1", "after the crash")
	if err != nil || lift.Lifted != "throttle" || lift.LiftedID != id {
		t.Fatalf("lift of the restored throttle: %+v %v", lift, err)
	}
	if _, ok := n.Router().Throttled(k.ID().Peer()); ok {
		t.Fatal("the lift left the restored throttle running")
	}
}

// throttleAndWait is TestGossipThrottleSurvivesKill's node process: it starts the node of
// file, throttles "chatty" through three signals, prints the stored decision's ID and waits to
// be killed.
func throttleAndWait(t *testing.T, file string) {
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the node to be ready", func() bool { return n.ready() == nil })
	waitUntil(t, "the policy and the agent", func() bool {
		known := false
		n.consensusNode().Read(func(r *identity.Registry) { _, known = r.Agent("chatty") })
		n.gossip.mu.Lock()
		defer n.gossip.mu.Unlock()
		return known && n.gossip.agg.Config().ThrottleTTL == time.Hour
	})
	ev := sha256.Sum256([]byte("crash"))
	for range 3 {
		if err := n.ReportAnomaly("chatty", "ngram", 0.9, ev); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := n.Decisions(alerts.DecisionQuery{Agent: "chatty", Action: "throttle", Limit: 1})
	if err != nil || len(ds) != 1 {
		t.Fatalf("throttle decision: %+v %v", ds, err)
	}
	fmt.Printf("THROTTLED %s\n", ds[0].ID)
	time.Sleep(2 * time.Minute) // killed before this ends
	t.Fatal("not killed")
}
