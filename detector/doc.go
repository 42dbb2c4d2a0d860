// Package detector holds Vigil's streaming anomaly detectors: policy rules, statistical and
// multivariate models and sequence models of an agent's actions, each a pure core that takes an
// observation and returns a score in [0,1] and can be checkpointed and restored.
//
// This package holds the contract every model implements (MetricModel, VectorModel,
// SequenceModel, FeedbackModel), the bounded action Vocabulary, and the Calibrator that maps a
// model's raw scores into [0,1] (empirical CDF with an exponential tail). The models live in
// subpackages (rules, multivar, and the univariate and sequence models); engine runs them per
// agent and catalog names them for the policy. See docs/detection.md.
//
//	v, _ := detector.NewVocabulary(detector.DefaultVocabularyConfig())
//	id := v.Add("tool:search") // 1; beyond MaxSize new strings map to Unseen (0)
//	c, _ := detector.NewCalibrator(detector.DefaultCalibratorConfig())
//	s := c.Score(raw)          // in [0,1]; 0 during the warm-up
//
// Invariants: detector never imports networking or Raft, and never reads the clock; every
// checkpoint decoder caps lengths before allocating and leaves the value unchanged on error.
package detector
