package alerts

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAlertStoreLifecycleAndRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.MaxAlerts = 3
	st, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0).UTC()
	var ids []string
	for i := range 5 {
		a, err := st.Add(Alert{Agent: []string{"a", "b"}[i%2], Model: "hst", Score: 0.99, Time: t0.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != StatusOpen || a.ID == "" {
			t.Fatalf("added: %+v", a)
		}
		ids = append(ids, a.ID)
	}
	if st.Len() != 3 {
		t.Fatalf("Len = %d, want the bound 3", st.Len())
	}
	if _, err := st.Get(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("oldest alert beyond the bound: %v", err)
	}
	list, _ := st.List(Query{})
	if len(list) != 3 || list[0].ID != ids[4] || list[2].ID != ids[2] {
		t.Fatalf("List newest first: %+v", list)
	}
	if l, _ := st.List(Query{Agent: "a"}); len(l) != 2 {
		t.Fatalf("agent filter: %+v", l)
	}
	if l, _ := st.List(Query{Since: t0.Add(4 * time.Second)}); len(l) != 1 {
		t.Fatalf("since filter: %+v", l)
	}
	if l, _ := st.List(Query{Limit: 1}); len(l) != 1 || l[0].ID != ids[4] {
		t.Fatalf("limit: %+v", l)
	}
	now := t0.Add(time.Hour)
	a, err := st.Ack(ids[3], "op1", now)
	if err != nil || a.Status != StatusAcked || a.AckedBy != "op1" || !a.AckedAt.Equal(now) {
		t.Fatalf("ack: %+v %v", a, err)
	}
	if _, err := st.Ack(ids[3], "op2", now); !errors.Is(err, ErrTransition) {
		t.Fatalf("second ack: %v", err)
	}
	a, err = st.Resolve(ids[3], "op2", true, now)
	if err != nil || a.Status != StatusResolved || !a.FalsePositive || a.ResolvedBy != "op2" || a.AckedBy != "op1" {
		t.Fatalf("resolve: %+v %v", a, err)
	}
	if _, err := st.Resolve(ids[3], "op3", false, now); !errors.Is(err, ErrTransition) {
		t.Fatalf("second resolve: %v", err)
	}
	if _, err := st.Ack("zz", "op", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bad id: %v", err)
	}
	if err := st.PutCheckpoint("agent/a", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if l, _ := st.List(Query{Status: StatusResolved}); len(l) != 1 || l[0].ID != ids[3] || !l[0].FalsePositive {
		t.Fatalf("after restart: %+v", l)
	}
	b, err := st.Add(Alert{Agent: "c", Time: now})
	if err != nil || b.ID <= ids[4] {
		t.Fatalf("ID after restart %q must follow %q: %v", b.ID, ids[4], err)
	}
	if st.Len() != 3 {
		t.Fatalf("Len after restart = %d", st.Len())
	}
	var got []byte
	if err := st.Checkpoints(func(name string, d []byte) error {
		if name == "agent/a" {
			got = d
		}
		return nil
	}); err != nil || len(got) != 3 {
		t.Fatalf("checkpoint after restart: %v %v", got, err)
	}
}

func TestAlertStoreConfigRefused(t *testing.T) {
	if _, err := Open(t.TempDir(), Config{MaxAlerts: 0, MaxCheckpointBytes: 1}); err == nil {
		t.Fatal("MaxAlerts 0 accepted")
	}
	if _, err := ParseStatus("closed"); err == nil {
		t.Fatal("status closed accepted")
	}
}

// TestDecisionStoreBoundRestartAndFilters: decisions get increasing IDs that are never reused,
// at most MaxDecisions are kept (the oldest go), filters select by agent, action and time, the
// list is newest first like List, and everything survives a reopen, alerts untouched.
func TestDecisionStoreBoundRestartAndFilters(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.MaxDecisions = 4
	st, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(2000, 0).UTC()
	al, err := st.Add(Alert{Agent: "a", Model: "hst", Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	steps := []Decision{
		{Agent: "a", AgentID: "12D3a", Action: "alert", Reporters: 1, Signals: 1, MaxScore: 0.9},
		{Agent: "b", AgentID: "12D3b", Action: "alert", Reporters: 1, Signals: 1},
		{Agent: "a", AgentID: "12D3a", Action: "throttle", Reporters: 1, Signals: 3, Until: t0.Add(time.Hour)},
		{Agent: "a", AgentID: "12D3a", Action: "quarantine", Reporters: 2, Signals: 4, Until: t0.Add(time.Hour)},
		{Agent: "a", AgentID: "12D3a", Action: ActionLift, By: "12D3op", Reason: "false positive: batch job"},
		{Agent: "b", AgentID: "12D3b", Action: "revoke", Reporters: 2, Signals: 2, EvidenceReporters: []string{"n1", "n2"}},
	}
	var ids []string
	for i, d := range steps {
		d.Time = t0.Add(time.Duration(i) * time.Minute)
		got, err := st.AddDecision(d)
		if err != nil {
			t.Fatalf("decision %d: %v", i, err)
		}
		if len(ids) > 0 && got.ID <= ids[len(ids)-1] {
			t.Fatalf("ID %q does not follow %q", got.ID, ids[len(ids)-1])
		}
		ids = append(ids, got.ID)
	}
	if st.DecisionsLen() != 4 || st.Len() != 1 {
		t.Fatalf("DecisionsLen %d (want the bound 4), alerts %d (want 1)", st.DecisionsLen(), st.Len())
	}
	if _, err := st.GetDecision(ids[1]); !errors.Is(err, ErrNoDecision) {
		t.Fatalf("decision beyond the bound: %v", err)
	}
	check := func(st *Store, label string) {
		t.Helper()
		all, err := st.ListDecisions(DecisionQuery{})
		if err != nil || len(all) != 4 || all[0].ID != ids[5] || all[3].ID != ids[2] {
			t.Fatalf("%s: all newest first: %+v %v", label, all, err)
		}
		for _, c := range []struct {
			name string
			q    DecisionQuery
			want []string
		}{
			{"agent", DecisionQuery{Agent: "a"}, []string{ids[4], ids[3], ids[2]}},
			{"action", DecisionQuery{Action: ActionLift}, []string{ids[4]}},
			{"agent+action", DecisionQuery{Agent: "b", Action: "revoke"}, []string{ids[5]}},
			{"since", DecisionQuery{Since: t0.Add(4 * time.Minute)}, []string{ids[5], ids[4]}},
			{"limit", DecisionQuery{Agent: "a", Limit: 1}, []string{ids[4]}},
			{"none", DecisionQuery{Agent: "c"}, nil},
		} {
			got, err := st.ListDecisions(c.q)
			if err != nil {
				t.Fatalf("%s %s: %v", label, c.name, err)
			}
			var gotIDs []string
			for _, d := range got {
				gotIDs = append(gotIDs, d.ID)
			}
			if !slices.Equal(gotIDs, c.want) {
				t.Errorf("%s %s: got %v, want %v", label, c.name, gotIDs, c.want)
			}
		}
		lift, err := st.GetDecision(ids[4])
		if err != nil || lift.By != "12D3op" || lift.Reason != "false positive: batch job" || !lift.Time.Equal(t0.Add(4*time.Minute)) {
			t.Fatalf("%s: lift: %+v %v", label, lift, err)
		}
		if q, _ := st.GetDecision(ids[3]); !q.Until.Equal(t0.Add(time.Hour)) || q.Reporters != 2 || q.Signals != 4 {
			t.Fatalf("%s: quarantine: %+v", label, q)
		}
	}
	check(st, "open")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	check(st, "after restart")
	if st.DecisionsLen() != 4 {
		t.Fatalf("DecisionsLen after restart = %d", st.DecisionsLen())
	}
	if a, err := st.Get(al.ID); err != nil || a.Agent != "a" {
		t.Fatalf("alert after restart: %+v %v", a, err)
	}
	d, err := st.AddDecision(Decision{Agent: "c", Action: "alert", Time: t0.Add(time.Hour)})
	if err != nil || d.ID <= ids[5] {
		t.Fatalf("ID after restart %q must follow %q: %v", d.ID, ids[5], err)
	}
	// Alerts and decisions number apart: the next alert follows the alerts, not the decisions.
	if b, _ := st.Add(Alert{Agent: "a", Time: t0}); b.ID != idOf(2) {
		t.Fatalf("alert ID %q after decisions, want %q", b.ID, idOf(2))
	}
}

// TestDecisionStoreRefusesBadInput: each bad decision or query is refused with an error naming
// the field, and nothing is stored.
func TestDecisionStoreRefusesBadInput(t *testing.T) {
	st, err := Open(t.TempDir(), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	good := Decision{Agent: "a", Action: ActionLift, Time: now, By: "local", Reason: "checked"}
	for _, c := range []struct {
		name, field string
		change      func(*Decision)
	}{
		{"no agent", "agent", func(d *Decision) { d.Agent = "" }},
		{"long agent", "agent", func(d *Decision) { d.Agent = strings.Repeat("a", MaxAgentLen+1) }},
		{"unknown action", "action", func(d *Decision) { d.Action = "ban" }},
		{"no time", "time", func(d *Decision) { d.Time = time.Time{} }},
		{"negative counts", "reporters", func(d *Decision) { d.Action, d.By, d.Reason, d.Signals = "alert", "", "", -1 }},
		{"lift without who", "by", func(d *Decision) { d.By = "" }},
		{"lift without reason", "reason", func(d *Decision) { d.Reason = "  " }},
		{"reason too long", "reason", func(d *Decision) { d.Reason = strings.Repeat("x", MaxReasonLen+1) }},
		{"reason with a newline", "reason", func(d *Decision) { d.Reason = "ok\nforged log line" }},
		{"reason not UTF-8", "reason", func(d *Decision) { d.Reason = "\xff" }},
		{"who on a step", "by", func(d *Decision) { d.Action = "quarantine" }},
	} {
		d := good
		c.change(&d)
		_, err := st.AddDecision(d)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "decision "+c.field) {
			t.Errorf("%s: want ErrInvalid naming %s, got %v", c.name, c.field, err)
		}
	}
	if st.DecisionsLen() != 0 {
		t.Fatalf("refused decisions stored: %d", st.DecisionsLen())
	}
	if _, err := st.ListDecisions(DecisionQuery{Action: "ban"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("query action ban: %v", err)
	}
	if _, err := st.ListDecisions(DecisionQuery{Limit: -1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("query limit -1: %v", err)
	}
	for _, id := range []string{"", "zz", "0000000000000001", "00000000000000000001"} {
		if _, err := st.GetDecision(id); !errors.Is(err, ErrNoDecision) {
			t.Errorf("GetDecision(%q): %v", id, err)
		}
	}
	if err := (Config{MaxAlerts: 1, MaxDecisions: 0, MaxCheckpointBytes: 1}).Validate(); err == nil || !strings.Contains(err.Error(), "MaxDecisions") {
		t.Fatalf("MaxDecisions 0: %v", err)
	}
	if err := (Config{MaxAlerts: 1, MaxDecisions: 10_000_001, MaxCheckpointBytes: 1}).Validate(); err == nil || !strings.Contains(err.Error(), "MaxDecisions") {
		t.Fatalf("MaxDecisions above the cap: %v", err)
	}
}

// TestRememberNonce: a nonce is refused again within its window, across a restart of the store,
// and forgotten once its TTL has passed; another kind is a separate namespace; bad input is
// refused and writes nothing.
func TestRememberNonce(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	n1, n2 := [16]byte{1}, [16]byte{2}
	if err := st.RememberNonce("lift", n1, now.Add(10*time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if err := st.RememberNonce("lift", n1, now.Add(10*time.Minute), now); !errors.Is(err, ErrNonceSeen) {
		t.Fatalf("second time: %v, want ErrNonceSeen", err)
	}
	if err := st.RememberNonce("keyring", n1, now.Add(10*time.Minute), now); err != nil {
		t.Fatalf("same nonce, other kind: %v", err)
	}
	for _, tc := range []struct {
		kind string
		exp  time.Time
	}{{"", now.Add(time.Minute)}, {strings.Repeat("k", maxNonceKind+1), now.Add(time.Minute)}, {"lift", now}} {
		if err := st.RememberNonce(tc.kind, n2, tc.exp, now); err == nil || errors.Is(err, ErrNonceSeen) {
			t.Fatalf("kind %q, exp %s: %v, want a refusal", tc.kind, tc.exp.Sub(now), err)
		}
	}
	if err := st.RememberNonce("lift", n2, now.Add(time.Second), now); err != nil {
		t.Fatalf("the refusals above wrote n2: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = Open(dir, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.RememberNonce("lift", n1, now.Add(10*time.Minute), now); !errors.Is(err, ErrNonceSeen) {
		t.Fatalf("after a restart: %v, want ErrNonceSeen", err)
	}
	time.Sleep(2100 * time.Millisecond) // Badger's TTL counts whole seconds
	if err := st.RememberNonce("lift", n2, time.Now().Add(time.Minute), time.Now()); err != nil {
		t.Fatalf("after its TTL: %v", err)
	}
}
