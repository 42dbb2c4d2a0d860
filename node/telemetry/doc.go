// Package telemetry is a node's record of what its agents do: every message it handles, every
// refusal and every event an agent reports becomes a Record in a bounded ring buffer, and each
// Record is handed to the subscribers (detection will subscribe).
//
//	buf := telemetry.New(telemetry.DefaultSize)
//	cancel := buf.Subscribe(func(r telemetry.Record) { … }) // must not block
//	defer cancel()
//	buf.Add(telemetry.Record{Agent: "planner-1", Kind: telemetry.KindSend, …})
//	recent := buf.Query(telemetry.Query{Agent: "planner-1", Limit: 100})
//
// Invariants: the buffer never holds more than its size (the oldest record is overwritten and
// counted in Dropped); Add never blocks on IO; subscribers run synchronously in Add, in
// subscription order, outside the buffer's lock. Memory: a Record is about 160 bytes plus its
// strings (names are shared with the registry view), so the default 100,000 records take about
// 16–25 MiB.
package telemetry
