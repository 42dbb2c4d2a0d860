package catalog

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/engine"
	"github.com/vigil-mesh/vigil/detector/metric"
	"github.com/vigil-mesh/vigil/detector/multivar"
	"github.com/vigil-mesh/vigil/detector/rules"
	"github.com/vigil-mesh/vigil/detector/sequence"
)

// Kind says which model interface an algorithm builds.
type Kind uint8

const (
	Metric   Kind = iota + 1 // detector.MetricModel: one numeric stream
	Vector                   // detector.VectorModel: a feature vector per observation
	Sequence                 // detector.SequenceModel: sessions of actions
)

func (k Kind) String() string {
	switch k {
	case Metric:
		return "metric"
	case Vector:
		return "vector"
	case Sequence:
		return "sequence"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Entry is one algorithm the policy can name. Exactly one constructor is set, by Kind.
type Entry struct {
	Name     string
	Kind     Kind
	metric   func(params map[string]any) (detector.MetricModel, error)
	vector   func(dim int, params map[string]any) (detector.VectorModel, error)
	sequence func(params map[string]any) (detector.SequenceModel, error)
}

// MetricEntry registers a metric model by its Config, DefaultConfig and constructor: params
// are decoded (Decode) onto the default config, validated by the constructor.
func MetricEntry[C any, M detector.MetricModel](name string, def func() C, build func(C) (M, error)) Entry {
	return Entry{Name: name, Kind: Metric, metric: func(p map[string]any) (detector.MetricModel, error) {
		cfg := def()
		if err := Decode(p, &cfg); err != nil {
			return nil, err
		}
		return build(cfg)
	}}
}

// VectorEntry registers a vector model whose default config depends on the vector length.
func VectorEntry[C any, M detector.VectorModel](name string, def func(dim int) C, build func(C) (M, error)) Entry {
	return Entry{Name: name, Kind: Vector, vector: func(dim int, p map[string]any) (detector.VectorModel, error) {
		cfg := def(dim)
		if err := Decode(p, &cfg); err != nil {
			return nil, err
		}
		return build(cfg)
	}}
}

// SequenceEntry registers a sequence model.
func SequenceEntry[C any, M detector.SequenceModel](name string, def func() C, build func(C) (M, error)) Entry {
	return Entry{Name: name, Kind: Sequence, sequence: func(p map[string]any) (detector.SequenceModel, error) {
		cfg := def()
		if err := Decode(p, &cfg); err != nil {
			return nil, err
		}
		return build(cfg)
	}}
}

// entries lists every algorithm. Adding one is one line here. (It is filled in init because
// the ensemble's constructor looks members up in it.)
var entries []Entry

func init() {
	entries = []Entry{
		MetricEntry("threshold", rules.DefaultModelConfig, rules.NewModel),
		{Name: "ensemble", Kind: Metric, metric: newEnsemble},
		VectorEntry("hst", multivar.DefaultHSTConfig, multivar.NewHST),
		VectorEntry("rrcf", multivar.DefaultRRCFConfig, multivar.NewRRCF),
		MetricEntry("ewma", metric.DefaultEWMAConfig, metric.NewEWMA),
		MetricEntry("gaussian", metric.DefaultGaussianConfig, metric.NewGaussian),
		MetricEntry("cad", liveCADConfig, metric.NewCAD),
		SequenceEntry("ngram", sequence.DefaultNGramConfig, sequence.NewNGram),
		SequenceEntry("lstm", sequence.DefaultLSTMConfig, sequence.NewLSTM),
		SequenceEntry("cover", sequence.DefaultCoverConfig, sequence.NewCover),
	}
}

// Lookup returns the entry for name, or an error listing the known names.
func Lookup(name string) (Entry, error) {
	for _, e := range entries {
		if e.Name == name {
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("catalog: unknown algorithm %q (known: %s)", name, strings.Join(Names(), ", "))
}

// Names lists the known algorithm names, sorted.
func Names() []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Name
	}
	sort.Strings(out)
	return out
}

func wrong(name string, got, want Kind) error {
	return fmt.Errorf("catalog: %s is a %s model, not a %s model", name, got, want)
}

// NewMetric builds the metric model name with params (nil = defaults). A vector algorithm
// (hst, rrcf) is built with dimension 1 and runs on the stream's values.
func NewMetric(name string, params map[string]any) (detector.MetricModel, error) {
	e, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if e.Kind == Vector {
		m, err := e.vector(1, params)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return &vectorMetric{m: m}, nil
	}
	if e.Kind != Metric {
		return nil, wrong(name, e.Kind, Metric)
	}
	m, err := e.metric(params)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// NewVector builds the vector model name for vectors of length dim.
func NewVector(name string, dim int, params map[string]any) (detector.VectorModel, error) {
	e, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if e.Kind != Vector {
		return nil, wrong(name, e.Kind, Vector)
	}
	m, err := e.vector(dim, params)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// NewSequence builds the sequence model name.
func NewSequence(name string, params map[string]any) (detector.SequenceModel, error) {
	e, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if e.Kind != Sequence {
		return nil, wrong(name, e.Kind, Sequence)
	}
	m, err := e.sequence(params)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// newEnsemble builds an ensemble of metric models. Its params are the EnsembleConfig fields
// (members, combine, weights, calibrator) plus, under each member's name, that member's params:
//
//	params: {members: [threshold, ewma], combine: mean, threshold: {threshold: "80%"}}
//	--param members=threshold,ewma --param threshold.threshold=80%
func newEnsemble(p map[string]any) (detector.MetricModel, error) {
	own := map[string]any{}
	memberParams := map[string]map[string]any{}
	for k, v := range p {
		head, rest, dotted := strings.Cut(k, ".")
		if _, err := Lookup(head); err == nil && head != "ensemble" {
			if memberParams[head] == nil {
				memberParams[head] = map[string]any{}
			}
			if dotted {
				memberParams[head][rest] = v
				continue
			}
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("param %q: want the member's params as a group", k)
			}
			for mk, mv := range m {
				memberParams[head][mk] = mv
			}
			continue
		}
		own[k] = v
	}
	cfg := engine.DefaultEnsembleConfig()
	if err := Decode(own, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	members := make([]detector.MetricModel, len(cfg.Members))
	for i, name := range cfg.Members {
		if name == "ensemble" {
			return nil, fmt.Errorf("ensemble: members: an ensemble cannot contain an ensemble")
		}
		m, err := NewMetric(name, memberParams[name])
		if err != nil {
			return nil, fmt.Errorf("ensemble: members[%d]: %w", i, err)
		}
		members[i] = m
	}
	for name := range memberParams {
		found := false
		for _, m := range cfg.Members {
			found = found || m == name
		}
		if !found {
			return nil, fmt.Errorf("ensemble: params given for %q, which is not a member", name)
		}
	}
	return engine.NewEnsemble(cfg, members)
}

// liveCADConfig is CAD for a live stream of unknown range: the range is learned from the first
// 750 values (NAB's longest probationary period) and widened by half its span on each side, and
// the learned contexts are capped so memory stays bounded. On NAB this configuration scores 61.4
// standard (docs/detection-nab.md); NAB mode, which is handed each file's range, scores 69.9.
func liveCADConfig() metric.CADConfig {
	c := metric.DefaultCADConfig()
	c.RangeLearning, c.RangeMargin, c.MaxContexts = 750, 0.5, 4096
	return c
}
