package alerts

import (
	"testing"
	"time"
)

// BenchmarkStoreAppend: storing one response decision (validation, JSON, a Badger write with
// SyncWrites) against storing one alert, the baseline, in the same run; both at the bound, so
// every append also deletes the oldest record.
func BenchmarkStoreAppend(b *testing.B) {
	cfg := DefaultConfig()
	cfg.MaxAlerts, cfg.MaxDecisions = 1000, 1000
	st, err := Open(b.TempDir(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	for range 1000 {
		if _, err := st.Add(Alert{Agent: "worker", Model: "hst", Time: now}); err != nil {
			b.Fatal(err)
		}
		if _, err := st.AddDecision(Decision{Agent: "worker", Action: "alert", Time: now}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("alert", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.Add(Alert{Agent: "worker", Model: "hst", Score: 0.99, Evidence: "interval burst", Time: now, Action: "quarantine"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decision", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.AddDecision(Decision{Agent: "worker", AgentID: "12D3KooWQBpdnuFDVsAvA3juM566CxHBuzWz7LjutMk6FSnC58sF",
				Action: "quarantine", Reporters: 2, Signals: 2, MaxScore: 0.99, Time: now, Until: now.Add(15 * time.Minute)}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkListDecisions: the newest 100 of 10,000 stored decisions, unfiltered and filtered by
// an agent holding one decision in 100 (the scan reads every record until it has 100 matches).
func BenchmarkListDecisions(b *testing.B) {
	st, err := Open(b.TempDir(), DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	for i := range 10_000 {
		agent := "worker"
		if i%100 == 0 {
			agent = "rare"
		}
		if _, err := st.AddDecision(Decision{Agent: agent, Action: "alert", Reporters: 1, Signals: 1, Time: now}); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		q    DecisionQuery
	}{{"newest100", DecisionQuery{Limit: 100}}, {"rare-agent", DecisionQuery{Agent: "rare", Limit: 100}}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if ds, err := st.ListDecisions(c.q); err != nil || len(ds) != 100 {
					b.Fatalf("%d decisions, %v", len(ds), err)
				}
			}
		})
	}
}
