package main

import (
	"sort"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/metric"
	"github.com/vigil-mesh/vigil/detector/nab"
)

// restPeriod is NAB's CAD rest period for a file: its probationary length / 5.
func restPeriod(f *nab.File) int { return int(float64(nab.ProbationaryLength(len(f.Values))) / 5.0) }

// factories are the configurations run on NAB. One configuration per model for the whole corpus:
// only what NAB itself hands every detector (the file's length, and its value range for the
// models marked so) varies per file.
var factories = map[string]nab.ModelFactory{
	"ewma": func(*nab.File) (detector.MetricModel, error) {
		return metric.NewEWMA(metric.DefaultEWMAConfig())
	},
	"gaussian": func(*nab.File) (detector.MetricModel, error) {
		return metric.NewGaussian(metric.DefaultGaussianConfig())
	},
	// gaussian-nab is NAB's published windowedGaussian exactly (window 6400, step 100, 1 − Q).
	"gaussian-nab": func(*nab.File) (detector.MetricModel, error) {
		return metric.NewGaussian(metric.NABGaussianConfig())
	},
	// cad is NAB's CAD OSE: it uses the file's min and max (inputMin/inputMax).
	"cad": func(f *nab.File) (detector.MetricModel, error) {
		cfg := metric.DefaultCADConfig()
		cfg.Min, cfg.Max, cfg.RestPeriod = f.Min(), f.Max(), restPeriod(f)
		return metric.NewCAD(cfg)
	},
	// cad-live-margin also widens the learned range by half its span on each side.
	"cad-live-margin": func(f *nab.File) (detector.MetricModel, error) {
		cfg := metric.DefaultCADConfig()
		cfg.RangeLearning, cfg.RestPeriod = nab.ProbationaryLength(len(f.Values)), restPeriod(f)
		cfg.RangeMargin = 0.5
		return metric.NewCAD(cfg)
	},
	// vigil is the strongest configuration: CAD (NAB mode) 0.85 + expanding Gaussian 0.15.
	"vigil": vigil,
	// cad-live learns its range from the probationary period instead (no look-ahead).
	"cad-live": func(f *nab.File) (detector.MetricModel, error) {
		cfg := metric.DefaultCADConfig()
		cfg.RangeLearning, cfg.RestPeriod = nab.ProbationaryLength(len(f.Values)), restPeriod(f)
		return metric.NewCAD(cfg)
	},
}

func modelNames() []string {
	var n []string
	for k := range factories {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func vigil(f *nab.File) (detector.MetricModel, error) {
	cfg := metric.DefaultCADConfig()
	cfg.Min, cfg.Max, cfg.RestPeriod = f.Min(), f.Max(), restPeriod(f)
	c, err := metric.NewCAD(cfg)
	if err != nil {
		return nil, err
	}
	gcfg := metric.DefaultGaussianConfig()
	gcfg.Window = 0
	g, err := metric.NewGaussian(gcfg)
	if err != nil {
		return nil, err
	}
	return metric.NewBlend([]detector.MetricModel{c, g}, []float64{0.85, 0.15})
}
