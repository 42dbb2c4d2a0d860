package main

import (
	"crypto/rand"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/admintest"
	"github.com/vigil-mesh/vigil/node/alerts"
)

// testDecisions is the decision backend of the newest adminNode.
var testDecisions admintest.StoreDecisions

// TestDecisionsCmd: list filters and prints newest first; lift by agent and by decision ID
// prints what it lifted and who; argument errors are usage errors (exit 2) that send nothing;
// a revoke or an unknown agent fails with the server's message.
func TestDecisionsCmd(t *testing.T) {
	_, _, keyPath, sock := adminNode(t)
	st := testDecisions.Store
	now := time.Now()
	add := func(d alerts.Decision) alerts.Decision {
		t.Helper()
		got, err := st.AddDecision(d)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	old := add(alerts.Decision{Agent: "planner-1", Action: "alert", Reporters: 1, Signals: 1, MaxScore: 0.9, Time: now.Add(-2 * time.Hour)})
	q := add(alerts.Decision{Agent: "planner-1", Action: "quarantine", Reporters: 2, Signals: 2, MaxScore: 0.97, Time: now.Add(-time.Minute), Until: now.Add(time.Hour)})
	th := add(alerts.Decision{Agent: "mailer", Action: "throttle", Reporters: 1, Signals: 3, Time: now.Add(-time.Minute), Until: now.Add(time.Hour), Rate: 0.5, Burst: 4})
	add(alerts.Decision{Agent: "gone", Action: "revoke", Reporters: 2, Signals: 2, Time: now, EvidenceReporters: []string{"12D3a", "12D3b"}})
	flags := []string{"--socket", sock, "--key", keyPath}

	out, code := runAdmin(t, append([]string{"decisions", "list", "--agent", "planner-1"}, flags...)...)
	if code != exitOK || !strings.Contains(out, q.ID) || !strings.Contains(out, old.ID) || strings.Contains(out, "mailer") ||
		strings.Index(out, q.ID) > strings.Index(out, old.ID) {
		t.Fatalf("list --agent (newest first): %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"decisions", "list", "--agent", "mailer"}, flags...)...)
	if code != exitOK || !strings.Contains(out, th.ID) || !strings.Contains(out, "30/m burst 4") {
		t.Fatalf("list --agent mailer shows the throttle's rate: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"decisions", "list", "--since", "1h", "--action", "quarantine", "-o", "json"}, flags...)...)
	var resp struct {
		Decisions []struct{ Id, Agent, Action string }
	}
	if code != exitOK || json.Unmarshal([]byte(out), &resp) != nil || len(resp.Decisions) != 1 || resp.Decisions[0].Id != q.ID {
		t.Fatalf("list --since 1h --action quarantine -o json: %d %s", code, out)
	}

	// Argument errors: usage errors, nothing sent.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"decisions", "lift"}, "accepts 1 arg"},
		{[]string{"decisions", "lift", "a", "b", "--reason", "x"}, "accepts 1 arg"},
		{[]string{"decisions", "lift", "planner-1"}, "--reason: required"},
		{[]string{"decisions", "lift", "planner-1", "--reason", "  "}, "--reason: required"},
		{[]string{"decisions", "lift", "planner-1", "--reason", "a\nb"}, "control character"},
		{[]string{"decisions", "lift", "planner-1", "--reason", strings.Repeat("x", 1025)}, "1025 bytes, max 1024"},
		{[]string{"decisions", "lift", "Planner!", "--reason", "x"}, "neither an agent name nor a decision ID"},
		{[]string{"decisions", "lift", "planner-1", "--reason", "x", "--out", "f"}, "unknown flag: --out"},
		{[]string{"decisions", "list", "--action", "ban"}, "--action \"ban\""},
		{[]string{"decisions", "list", "--since", "yesterday"}, "--since"},
	} {
		out, code := runAdmin(t, append(c.args, flags...)...)
		if code != exitUsage || !strings.Contains(out, c.want) {
			t.Errorf("%v: want exit %d mentioning %q, got %d: %s", c.args, exitUsage, c.want, code, out)
		}
	}
	if out, code := runAdmin(t, "decisions"); code != exitUsage || !strings.Contains(out, "name a subcommand (list, lift)") {
		t.Errorf("decisions alone: %d %s", code, out)
	}
	if n := st.DecisionsLen(); n != 4 {
		t.Fatalf("argument errors recorded something: %d decisions", n)
	}

	// Refusals from the node.
	if out, code := runAdmin(t, append([]string{"decisions", "lift", "gone", "--reason", "x"}, flags...)...); code == exitOK || !strings.Contains(out, "vigil agent reinstate") {
		t.Fatalf("lift of a revoke: %d %s", code, out)
	}
	if out, code := runAdmin(t, append([]string{"decisions", "lift", "nobody", "--reason", "x"}, flags...)...); code == exitOK || !strings.Contains(out, `no agent "nobody"`) || !strings.Contains(out, "code not_found") {
		t.Fatalf("lift of an unknown agent: %d %s", code, out)
	}

	// Lifts: by agent, then by decision ID with JSON output.
	out, code = runAdmin(t, append([]string{"decisions", "lift", "planner-1", "--reason", "load test"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "lifted the quarantine of agent planner-1") || !strings.Contains(out, "by local") ||
		!strings.Contains(out, "lifted decision "+q.ID) {
		t.Fatalf("lift by agent: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"decisions", "lift", th.ID, "--reason", "known batch", "-o", "json"}, flags...)...)
	var lr struct {
		Decision struct{ Action, Agent, By, Reason, Lifted, LiftedId string }
	}
	if code != exitOK || json.Unmarshal([]byte(out), &lr) != nil || lr.Decision.Action != "lift" || lr.Decision.Agent != "mailer" ||
		lr.Decision.Lifted != "throttle" || lr.Decision.LiftedId != th.ID || lr.Decision.Reason != "known batch" {
		t.Fatalf("lift by ID -o json: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"decisions", "list", "--action", "lift"}, flags...)...)
	if code != exitOK || !strings.Contains(out, `lifted quarantine `+q.ID+` by local: "load test"`) || !strings.Contains(out, `lifted throttle `+th.ID) {
		t.Fatalf("list --action lift: %d %s", code, out)
	}
}

// TestDecisionsLiftAllNodes: --all-nodes against a real daemon signs the lift with the operator
// key and prints each node's result: nothing to lift is not a failure (exit 0); an unknown
// agent is refused there (exit 1, the table says why); without --key it is a usage error, and
// signed by a key that is not an operator of the cluster the node refuses it (exit 1).
func TestDecisionsLiftAllNodes(t *testing.T) {
	sock, opKeyPath, _, _ := gossipNode(t, false)
	t.Setenv("VIGIL_OPERATOR_KEY", "")
	flags := []string{"--socket", sock, "--key", opKeyPath}
	if out, code := runAdmin(t, append([]string{"agent", "register", "planner-1", "--agent-id", newID(t)}, flags...)...); code != exitOK {
		t.Fatalf("register: %d %s", code, out)
	}

	out, code := runAdmin(t, append([]string{"decisions", "lift", "planner-1", "--reason", "load test", "--all-nodes"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "1 of 1 nodes answered without a failure") || !strings.Contains(out, "n1") ||
		!strings.Contains(out, "nothing_to_lift") || !strings.Contains(out, "no throttle or quarantine is running") {
		t.Fatalf("lift --all-nodes with nothing to lift: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"decisions", "lift", "nobody", "--reason", "x", "--all-nodes", "-o", "json"}, flags...)...)
	var resp struct {
		Nodes  []struct{ NodeName, Result, Error string }
		Failed uint32
	}
	if code != exitError || json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &resp) != nil || resp.Failed != 1 ||
		len(resp.Nodes) != 1 || resp.Nodes[0].Result != "refused" || !strings.Contains(resp.Nodes[0].Error, `no agent "nobody"`) ||
		!strings.Contains(out, "1 of 1 nodes failed: n1 (refused)") {
		t.Fatalf("lift --all-nodes of an unknown agent: %d %s", code, out)
	}

	if out, code := runAdmin(t, "decisions", "lift", "planner-1", "--reason", "x", "--all-nodes", "--socket", sock); code != exitUsage || !strings.Contains(out, "--key") {
		t.Fatalf("--all-nodes without --key: %d %s", code, out)
	}
	if out, code := runAdmin(t, append([]string{"decisions", "lift", "Planner!", "--reason", "x", "--all-nodes"}, flags...)...); code != exitUsage || !strings.Contains(out, "not an agent name") {
		t.Fatalf("--all-nodes with a bad name: %d %s", code, out)
	}
	stranger, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	strangerPath := filepath.Join(t.TempDir(), "mallory.key")
	if err := identity.WriteKeyFile(strangerPath, identity.RoleOperator, stranger); err != nil {
		t.Fatal(err)
	}
	if out, code := runAdmin(t, "decisions", "lift", "planner-1", "--reason", "x", "--all-nodes", "--socket", sock, "--key", strangerPath); code != exitError ||
		!strings.Contains(out, "not an operator") || !strings.Contains(out, "code unauthorized") {
		t.Fatalf("--all-nodes signed by a non-operator: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"decisions", "list", "--agent", "planner-1", "--action", "lift"}, flags...)...)
	if code != exitOK || strings.Contains(out, "planner-1") {
		t.Fatalf("a lift was recorded though nothing ran: %d %s", code, out)
	}
}
