// Package rules holds Vigil's policy rules: thresholds on metrics, rates over sliding windows
// and capability checks, in the shape a policy file writes them
//
//	metric: cpu_usage            threshold: 80%    for: 30s   action: alert
//	metric: messages_per_minute  threshold: 100               action: throttle
//	metric: bytes                threshold: 64MiB/m           action: quarantine
//
// The policy YAML is parsed elsewhere (identity/policy); this package gives it ParseThreshold
// and ParseAction for the threshold and action strings, and evaluates rules:
//
//	th, err := rules.ParseThreshold("80%")
//	set, err := rules.NewSet([]rules.Rule{{Metric: "cpu_usage", Threshold: th, For: 30 * time.Second}})
//	st := set.NewState() // one per agent
//	res := set.Observe(st, tUnixNano, "cpu_usage", 93.5, nil)
//	// res[0].Score == 1 once cpu_usage has stayed above 80 for 30 s; res[0].Evidence names the rule.
//
// A percentage threshold is compared with values expressed in percent points (cpu_usage 0–100),
// a size with bytes, a duration with seconds. A rule is violated when the value is strictly
// above the threshold; equal is not a violation.
//
// Model wraps one gauge rule as the "threshold" detector.MetricModel; Capabilities scores an
// attempt to use a capability the agent does not hold 1.
//
// Invariants: pure — every observation carries its own time and nothing reads the clock; a
// Set is immutable and may be shared by all agents, a State belongs to one agent and is not
// safe for concurrent use; memory per agent is 136 bytes per rule (rate windows are 12 buckets).
package rules
