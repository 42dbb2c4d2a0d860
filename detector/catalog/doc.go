// Package catalog maps the algorithm names a policy (or `vigil detect --algorithm`) uses to
// model constructors, and decodes the policy's free-form params onto each model's Config.
//
//	m, err := catalog.NewMetric("threshold", map[string]any{"threshold": "80%", "for": "30s"})
//	v, err := catalog.NewVector("hst", 8, map[string]any{"trees": 32, "seed": 7})
//	catalog.Names() // every registered name
//
// Params are matched to Config fields case-insensitively, ignoring '_' and '-' (size_limit →
// SizeLimit); values may be typed (from YAML) or strings (from the command line); nested
// configs take a map or dotted keys (calibrator.window). An unknown key is an error that names
// it and lists the known ones; an out-of-range value is refused by the model's Validate.
//
// Registered here: threshold (rules.Model), ensemble (engine.Ensemble of metric models),
// hst (multivar.HST), rrcf (multivar.RRCF), ewma, gaussian and cad (metric), and the sequence
// models ngram, lstm and cover (sequence.NGram, sequence.LSTM, sequence.Cover). Adding an algorithm is one line in entries, e.g.
//
//	MetricEntry("ewma", metric.DefaultEWMAConfig, metric.NewEWMA),
//
// NewMetric also builds a vector algorithm (hst, rrcf) with dimension 1 running on the stream's
// values, so those can watch one metric (rrcf with shingle k scores the shape of the last k
// values) or be ensemble members.
//
// Invariant: the catalogue is a fixed list built at compile time; nothing registers at run time.
package catalog
