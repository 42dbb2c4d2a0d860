// Package sim runs the real node code, many nodes in one process, over simulated networks with
// latency, loss and partitions, driven by one seed, and checks invariants throughout.
//
// Status: not built yet (see docs/architecture.md, "What exists today").
//
// Invariant: nothing imports sim except cmd/ and tests.
package sim
