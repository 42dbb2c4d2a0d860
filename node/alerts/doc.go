// Package alerts is the node's durable record of detector alerts and of the detector's
// per-agent checkpoints: one Badger v4 database under the data directory's state/ folder
// (DESIGN.md §8), written with SyncWrites on.
//
// Usage:
//
//	st, err := alerts.Open(filepath.Join(dataDir, "state"), alerts.DefaultConfig())
//	a, err := st.Add(alerts.Alert{Agent: "summarizer", Model: "rule:cpu_usage > 80%", Score: 1, …})
//	list, err := st.List(alerts.Query{Status: alerts.StatusOpen, Limit: 100})
//	a, err = st.Resolve(a.ID, "operator 12D3…", true, time.Now())
//
// Invariants:
//   - At most Config.MaxAlerts alerts are kept: adding one beyond it deletes the oldest.
//   - IDs are assigned by the store, increase with every Add and are never reused, also across
//     restarts (the next ID follows the newest stored one).
//   - Status only moves forward: open → acked → resolved, or open → resolved. Each move records
//     who made it and when in the alert itself; a refused move changes nothing.
//   - A record read back that does not decode is reported as an error naming its key, never
//     silently skipped.
package alerts
