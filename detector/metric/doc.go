// Package metric holds Vigil's univariate streaming anomaly models: each scores one numeric
// stream (an agent's cpu_usage, bytes per second, latency, or an NAB series) point by point and
// implements detector.MetricModel.
//
//   - ewma: exponentially weighted mean and variance, score erf(|z|/√2) of the point's z-score.
//   - gaussian: NAB's windowed Gaussian baseline (mean and deviation of the last Window points).
//   - cad: a faithful port of NAB's Contextual Anomaly Detector, open-source edition (CAD OSE,
//     M. Smirnov 2016): the value is quantised into "facts", pairs of consecutive fact sets
//     become learned contexts, and the score is the share of the contexts the model expected
//     that did not show up.
//
// Usage:
//
//	m, err := metric.NewEWMA(metric.DefaultEWMAConfig())
//	if err != nil { … }
//	s := m.Observe(t.UnixNano(), cpu)  // in [0,1]
//	snap, _ := m.MarshalBinary()       // checkpoint; UnmarshalBinary restores exactly
//
// Invariants: models are pure cores. They start no goroutine, never read the clock (t is given
// by the caller; the statistical models do not use it) and are not safe for concurrent use.
// Observe always returns a value in [0,1]; a value that is NaN or ±Inf is not learned and scores
// 1. A checkpoint restored into a model built with the same Config returns exactly the scores the
// original would have returned. UnmarshalBinary checks every length against the Config before
// allocating and changes nothing when it fails.
package metric
