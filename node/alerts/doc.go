// Package alerts is the node's durable record of detector alerts, of the collective-response
// decisions the node took (and operators' lifts of them), and of the detector's per-agent
// checkpoints: one Badger v4 database under the data directory's state/ folder (DESIGN.md §8),
// written with SyncWrites on.
//
// Usage:
//
//	st, err := alerts.Open(filepath.Join(dataDir, "state"), alerts.DefaultConfig())
//	a, err := st.Add(alerts.Alert{Agent: "summarizer", Model: "rule:cpu_usage > 80%", Score: 1, …})
//	list, err := st.List(alerts.Query{Status: alerts.StatusOpen, Limit: 100})
//	a, err = st.Resolve(a.ID, "operator 12D3…", true, time.Now())
//	d, err := st.AddDecision(alerts.Decision{Agent: "summarizer", Action: "quarantine", Time: now, …})
//	ds, err := st.ListDecisions(alerts.DecisionQuery{Agent: "summarizer", Limit: 100})
//
// Invariants:
//   - At most Config.MaxAlerts alerts and Config.MaxDecisions decisions are kept, under their
//     own key prefixes: adding one beyond the bound deletes the oldest of its kind.
//   - IDs are assigned by the store (16 hex digits), increase with every Add (AddDecision) and
//     are never reused, also across restarts (the next ID follows the newest stored one).
//     Alerts and decisions are numbered apart.
//   - Lists are newest first. A decision is validated before it is stored; a lift always
//     carries who lifted and a reason.
//   - Status only moves forward: open → acked → resolved, or open → resolved. Each move records
//     who made it and when in the alert itself; a refused move changes nothing.
//   - A record read back that does not decode is reported as an error naming its key, never
//     silently skipped.
package alerts
