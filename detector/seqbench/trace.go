package seqbench

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/vigil-mesh/vigil/detector"
)

// Trace-level scorers: each reads a whole session and returns a raw score (higher = more
// unusual). They measure what frequency features of whole traces can do on ADFA-LD beside the
// sequence models; they are benchmark instruments, not detector models.

// BagConfig describes a bag-of-n-grams vector of a session.
type BagConfig struct {
	// Orders are the n-gram lengths counted together (1 = single actions), each 1..8.
	Orders []int
	// Weight turns a count c into a value: "count" (c), "log" (1+ln c) or "binary" (1).
	Weight string
	// IDF multiplies each n-gram's value by its smoothed inverse document frequency over the
	// training sessions, ln((1+N)/(1+df))+1 (an n-gram no training session holds gets the
	// largest).
	IDF bool
	// Unseen counts n-grams that no training session holds in the vector's norm (they match
	// nothing, so they lower every cosine similarity); without it they are dropped.
	Unseen bool
}

func (c BagConfig) String() string {
	o := make([]string, len(c.Orders))
	for i, n := range c.Orders {
		o[i] = fmt.Sprint(n)
	}
	s := "n=" + strings.Join(o, ",") + " " + c.Weight
	if c.IDF {
		s += " idf"
	}
	if !c.Unseen {
		s += ", unseen n-grams dropped"
	}
	return s
}

// Validate checks the orders and the weight.
func (c BagConfig) Validate() error {
	if len(c.Orders) == 0 {
		return fmt.Errorf("seqbench: BagConfig.Orders is empty")
	}
	for _, n := range c.Orders {
		if n < 1 || n > 8 {
			return fmt.Errorf("seqbench: BagConfig.Orders holds %d, want 1..8", n)
		}
	}
	switch c.Weight {
	case "count", "log", "binary":
	default:
		return fmt.Errorf("seqbench: BagConfig.Weight %q, want count, log or binary", c.Weight)
	}
	return nil
}

func countGrams(s []detector.Action, orders []int) map[uint64]float64 {
	m := map[uint64]float64{}
	for _, n := range orders {
		for i := 0; i+n <= len(s); i++ {
			m[gramKeyN(s[i:i+n])]++
		}
	}
	return m
}

// sparse is an L2-normalisable sparse vector: indices ascending.
type sparse struct {
	idx  []uint64
	val  []float64
	norm float64
}

type posting struct {
	i int32
	v float64
}

// KNN scores a session by its cosine distance to the nearest training sessions in a
// bag-of-n-grams space (an inverted index over the training vectors).
type KNN struct {
	cfg   BagConfig
	n     int
	df    map[uint64]int
	post  map[uint64][]posting
	norms []float64
	own   []float64 // each training session's distance to its nearest other one (LOF)
}

// NewKNN indexes the training sessions.
func NewKNN(cfg BagConfig, train [][]detector.Action) (*KNN, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &KNN{cfg: cfg, n: len(train), df: map[uint64]int{}, post: map[uint64][]posting{}}
	for _, s := range train {
		for k := range countGrams(s, cfg.Orders) {
			m.df[k]++
		}
	}
	for i, s := range train {
		v := m.vector(s)
		m.norms = append(m.norms, v.norm)
		for j, k := range v.idx {
			m.post[k] = append(m.post[k], posting{int32(i), v.val[j]})
		}
	}
	m.own = make([]float64, len(train))
	for i, s := range train {
		d := m.distances(s)
		d[i] = math.Inf(1)
		m.own[i] = slices.Min(d)
	}
	return m, nil
}

func (m *KNN) vector(s []detector.Action) sparse {
	g := countGrams(s, m.cfg.Orders)
	keys := make([]uint64, 0, len(g))
	for k := range g {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var v sparse
	sum := 0.0
	for _, k := range keys {
		c := g[k]
		x := c
		switch m.cfg.Weight {
		case "log":
			x = 1 + math.Log(c)
		case "binary":
			x = 1
		}
		df, known := m.df[k]
		if m.cfg.IDF {
			x *= math.Log(float64(1+m.n)/float64(1+df)) + 1
		}
		if known {
			v.idx = append(v.idx, k)
			v.val = append(v.val, x)
			sum += x * x
		} else if m.cfg.Unseen {
			sum += x * x
		}
	}
	v.norm = math.Sqrt(sum)
	return v
}

// distances returns the cosine distance (1 − cosine similarity, in [0,1]) from s to every
// training session; a session or training vector of norm 0 is at distance 1.
func (m *KNN) distances(s []detector.Action) []float64 {
	q := m.vector(s)
	dot := make([]float64, len(m.norms))
	for j, k := range q.idx {
		for _, p := range m.post[k] {
			dot[p.i] += q.val[j] * p.v
		}
	}
	for i, n := range m.norms {
		if q.norm == 0 || n == 0 {
			dot[i] = 1
		} else {
			dot[i] = max(0, 1-dot[i]/(q.norm*n))
		}
	}
	return dot
}

// Distance is the mean cosine distance from s to its k nearest training sessions.
func (m *KNN) Distance(s []detector.Action, k int) float64 {
	d := m.distances(s)
	sort.Float64s(d)
	k = max(1, min(k, len(d)))
	t := 0.0
	for _, x := range d[:k] {
		t += x
	}
	return t / float64(k)
}

// LOF is a local-outlier ratio: the smallest, over training sessions j, of the distance from s
// to j divided by j's own distance to its nearest other training session (+0.01), so a session
// as far from a dense cluster as that cluster's members are from each other scores about 1.
func (m *KNN) LOF(s []detector.Action) float64 {
	best := math.Inf(1)
	for i, x := range m.distances(s) {
		best = min(best, x/(m.own[i]+0.01))
	}
	return best
}

// LeaveOneOut returns the Distance (k = 1) of each training session to the others: the
// out-of-sample reference for calibrating Distance.
func (m *KNN) LeaveOneOut() []float64 { return slices.Clone(m.own) }

// UnseenFraction returns a scorer: the fraction of a session's n-grams that no training
// session holds, counting each distinct n-gram once (distinct) or every occurrence.
func UnseenFraction(train [][]detector.Action, n int, distinct bool) func([]detector.Action) float64 {
	seen := map[uint64]bool{}
	for _, s := range train {
		for i := 0; i+n <= len(s); i++ {
			seen[gramKeyN(s[i:i+n])] = true
		}
	}
	return func(s []detector.Action) float64 {
		grams := map[uint64]int{}
		for i := 0; i+n <= len(s); i++ {
			grams[gramKeyN(s[i:i+n])]++
		}
		u, t := 0, 0
		for k, c := range grams {
			w := c
			if distinct {
				w = 1
			}
			if !seen[k] {
				u += w
			}
			t += w
		}
		if t == 0 {
			return 0
		}
		return float64(u) / float64(t)
	}
}

// gramKeyN hashes an n-gram (FNV-1a over its length and ids); collisions are negligible at the
// sizes measured here.
func gramKeyN(s []detector.Action) uint64 {
	h := uint64(14695981039346656037)
	mix := func(a uint32) {
		for b := 0; b < 4; b++ {
			h ^= uint64(byte(a >> (8 * b)))
			h *= 1099511628211
		}
	}
	mix(uint32(len(s)))
	for _, a := range s {
		mix(a)
	}
	return h
}
