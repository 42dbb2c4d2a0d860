// Package detector holds Vigil's streaming anomaly detectors: policy rules, statistical and
// multivariate models and sequence models of an agent's actions, each a pure core that takes an
// observation and returns a score in [0,1] and can be checkpointed and restored.
//
// Status: not built yet (see docs/architecture.md, "What exists today").
//
// Invariant: detector never imports networking or Raft, and never reads the clock.
package detector
