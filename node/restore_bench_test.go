package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/node/alerts"
)

// BenchmarkRestoreAtStart is what a node's start spends on finding the quarantines and
// throttles to re-apply, with a full decision store (alerts.DefaultConfig's 10,000 decisions:
// 1,000 agents, each quarantined, throttled, renewed, alerted, some lifted): reading the stored
// decisions alone (read, the baseline) and reading them plus the replay (read+replay).
func BenchmarkRestoreAtStart(b *testing.B) {
	st, err := alerts.Open(b.TempDir(), alerts.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	const agents, perAgent = 1000, 10
	for i := range agents {
		id := newTestID(b)
		name := fmt.Sprintf("agent-%d", i)
		for j := range perAgent {
			d := alerts.Decision{Time: now, Agent: name, AgentID: id.String(), Until: now.Add(time.Duration(j+1) * time.Minute)}
			switch {
			case j == perAgent-1 && i%4 == 0:
				d = alerts.Decision{Time: now, Agent: name, AgentID: id.String(), Action: alerts.ActionLift, By: "local", Reason: "bench"}
			case j%3 == 0:
				d.Action = "quarantine"
			case j%3 == 1:
				d.Action, d.Rate, d.Burst = "throttle", 1, 5
			default:
				d.Action, d.Until = "alert", time.Time{}
			}
			if _, err := st.AddDecision(d); err != nil {
				b.Fatal(err)
			}
		}
	}
	var running int
	b.Run("read", func(b *testing.B) {
		for b.Loop() {
			ds, err := st.ListDecisions(alerts.DecisionQuery{})
			if err != nil || len(ds) != agents*perAgent {
				b.Fatal(len(ds), err)
			}
		}
	})
	b.Run("read+replay", func(b *testing.B) {
		for b.Loop() {
			ds, err := st.ListDecisions(alerts.DecisionQuery{})
			if err != nil {
				b.Fatal(err)
			}
			out, problems := runningResponses(ds, now)
			if len(problems) != 0 {
				b.Fatal(problems)
			}
			running = len(out)
		}
	})
	if running != agents*3/4 {
		b.Fatalf("%d agents restored, want %d", running, agents*3/4)
	}
}
