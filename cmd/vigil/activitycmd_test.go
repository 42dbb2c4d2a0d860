package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/node/telemetry"
)

// testActivity is the telemetry the admin API of adminNode answers AgentActivity from.
var testActivity = telemetry.New(64)

func TestAgentActivityCmd(t *testing.T) {
	_, _, keyPath, sock := adminNode(t)
	now := time.Now()
	testActivity.Add(telemetry.Record{Time: now.Add(-time.Hour), Agent: "planner-1", Kind: telemetry.KindSend, Action: "ask",
		Peer: "worker", Bytes: 5, Latency: 2 * time.Millisecond, Outcome: telemetry.OutcomeOK})
	testActivity.Add(telemetry.Record{Time: now, Agent: "planner-1", Kind: telemetry.KindSend, Action: "tell",
		Peer: "worker", Outcome: "no_capability", Hop: "sender-node"})
	testActivity.Add(telemetry.Record{Time: now, Agent: "other", Kind: telemetry.KindEvent, Action: "metric:cpu_usage"})
	flags := []string{"--socket", sock, "--key", keyPath}
	// The node answers only for agents its registry holds.
	if out, code := runAdmin(t, append([]string{"agent", "register", "planner-1", "--agent-id", newID(t)}, flags...)...); code != exitOK {
		t.Fatalf("register: %d %s", code, out)
	}

	out, code := runAdmin(t, append([]string{"agent", "activity", "planner-1"}, flags...)...)
	if code != exitOK || !strings.Contains(out, "no_capability") || !strings.Contains(out, "sender-node") ||
		!strings.Contains(out, "2ms") || strings.Contains(out, "cpu_usage") {
		t.Fatalf("activity: %d %s", code, out)
	}
	out, code = runAdmin(t, append([]string{"agent", "activity", "planner-1", "--since", "10m", "-o", "json"}, flags...)...)
	var resp struct {
		Records []struct{ Action, Outcome string }
	}
	if code != exitOK || json.Unmarshal([]byte(out), &resp) != nil || len(resp.Records) != 1 || resp.Records[0].Outcome != "no_capability" {
		t.Fatalf("activity --since 10m: %d %s", code, out)
	}
	for _, args := range [][]string{
		{"agent", "activity"},
		{"agent", "activity", "planner-1", "--since", "yesterday"},
		{"agent", "activity", "planner-1", "--since", "-5m"},
	} {
		if out, code := runAdmin(t, append(args, flags...)...); code != exitUsage {
			t.Fatalf("%v: want exit %d, got %d: %s", args, exitUsage, code, out)
		}
	}
}
