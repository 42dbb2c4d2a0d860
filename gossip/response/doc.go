// Package response is the pure core of collective response: it aggregates anomaly signals from
// distinct admitted nodes per agent within a window and decides a step on the ladder alert →
// throttle → quarantine (local, with a TTL, escalating after repeats) → revoke, and when the
// decision is revoke, hands back the evidence for an identity.AutoRevokeAgent command.
//
// Usage:
//
//	agg, _ := response.New(response.DefaultConfig())
//	// for each verified signal from an admitted node (own signals included):
//	d := agg.Observe(sig, now)
//	if d.Changed && !d.DryRun {
//		switch d.Action {
//		case response.Throttle:   // limit the agent's sends to d.Rate/s (burst d.Burst) until d.Until
//		case response.Quarantine: // cut the agent off locally until d.Until
//		case response.Revoke:     // propose AutoRevokeAgent{Signals: d.Evidence}
//		}
//	}
//
// Invariants:
//   - Pure: no goroutines, no IO, no clock; every method takes now. Not safe for concurrent use.
//   - The caller verifies each signal (identity.Signal.Verify) and that its reporter is an
//     admitted node before Observe; the aggregator trusts its input on that point only.
//   - A reporter counts once however many signals it sends: Reporters is the number of
//     distinct reporters with a fresh signal. Fewer than RevokeQuorum distinct reporters never
//     yield Revoke, whatever their rate, so fewer than revoke_quorum compromised nodes cannot
//     revoke a healthy agent (and the FSM checks the same evidence again).
//   - A signal counts while ObservedAt is in [now − Window, now + MaxSkew]; Evidence holds only
//     such signals, the freshest per reporter, at most identity.MaxAutoRevokeSignals.
//   - Memory is bounded: at most MaxAgents agents and MaxPerReporter signals per reporter and
//     agent; the least recently seen agent is forgotten first.
//   - DryRun marks every decision; the shell records it and does nothing else.
//   - Lift (an operator's reversal) forgets the agent's counted signals, its step and its
//     quarantine count; the lifted signals stay known as duplicates while inside the window (at
//     most 4 × MaxPerReporter per reporter), so only fresh signals climb the ladder again. A
//     revoke is never lifted (ErrRevoked): it is reversed by M-of-N reinstatement. State reads
//     an agent's step without changing anything.
package response
