// Package engine is the per-agent detector a node runs, and the Ensemble that combines several
// metric models into one calibrated score.
//
// An Engine takes telemetry records (message, refusal, event, metric; each with its own time)
// and, per agent, runs them through
//
//   - the policy rules (rules.Set; messages, bytes, refusals, errors, events and latency are
//     fed as metrics, so "messages_per_minute: 100" and "bytes: 64MiB/m" work),
//   - the capability check (an Event whose Action the agent does not hold scores 1),
//   - the shared sequence model, one session per agent (sessions end on a Session change,
//     after SessionGap, or by EndIdle/End), with actions mapped through the engine's bounded
//     Vocabulary (shared, so that an id means the same action for every agent). The model
//     first goes through a baseline (baseline.go): completed sessions are collected and
//     nothing is scored by it until the caller has fitted a model on them
//     (PendingFit → TakeBaseline → Fit elsewhere → FitDone),
//   - one metric model per reported metric name (up to MaxMetrics),
//   - a feature vector per Interval (messages, log bytes, distinct peers, refusals, errors,
//     events, log mean latency, distinct actions) scored by the vector model (HST by default)
//     when a later record closes the interval; a gap of two or more intervals adds one all-zero
//     interval for the quiet stretch.
//
// It returns an Alert{Agent, Model, Score, Evidence, Time, Action} on the rising edge of each
// source: when a rule becomes violated, on every capability violation, and when a model's score
// reaches the agent's threshold for it after being below.
//
//	e, _ := engine.New(engine.DefaultConfig())
//	alerts, err := e.Observe(engine.Record{Agent: "a1", Time: t, Kind: engine.Message, Peer: "a2", Bytes: 512}, nil)
//	_ = e.Feedback("a1", alerts[0])   // a false positive: threshold up, model told
//	ckpt, _ := e.Checkpoint("a1")     // the node stores this; Restore brings it back
//	if e.PendingFit() {               // the baseline is complete
//		ss := e.TakeBaseline()        // fit a fresh model on ss off the hot path, then:
//		_ = e.FitDone(fitted)
//	}
//	seq, _ := e.CheckpointSequence()  // vocabulary, baseline or fitted model: RestoreSequence
//
// Feedback raises that agent's threshold for that model by FeedbackStep of the way to 1
// (0.999 → 0.99925 → 0.99944 …) and tells the model if it implements detector.FeedbackModel;
// for a sequence alert it fine-tunes the shared model on the session the alert came from (the
// open one, or one of the agent's last two that alerted). Rule and capability alerts are the
// policy and do not change.
//
// Memory per agent (default config, three rules; measured by BenchmarkEngine10kAgents with
// 10,000 agents, see docs/benchmarks.md): about 10.6 KiB once the HST has bootstrapped (its
// counters 8 KiB, its calibrator 2 KiB), at most about 21.4 KiB at the end of its bootstrap
// (256 vectors × 8 features buffered), 0.9 KiB with rules only; plus each metric model (at most
// MaxMetrics); with a sequence model, a session (304 B for the default LSTM) and up to 256
// action ids of the open session (typically tens of bytes), plus, once per engine, the shared
// vocabulary (at most 4,096 actions of 128 bytes), the model and, during the baseline, at most
// Baseline.MaxActions ids (400 KiB by default).
//
// Invariants: pure — no clock (time comes from records), no goroutines, no IO; not safe for
// concurrent use; a malformed record or checkpoint is refused and changes nothing.
package engine
