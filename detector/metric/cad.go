package metric

import (
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/vigil-mesh/vigil/detector"
)

// CADConfig configures a CAD OSE model. The defaults are NAB's (nab/detectors/context_ose).
type CADConfig struct {
	// Min and Max bound the values quantised into 2^NumNormValueBits levels. NAB hands each
	// detector the file's own minimum and maximum (inputMin/inputMax), which a live stream does
	// not know: set RangeLearning instead. A value outside [Min, Max] is quantised beyond the
	// levels and so becomes a never-seen fact (as in the original). Used when RangeLearning is 0.
	Min, Max float64
	// RangeLearning, when > 0, makes the model take Min and Max from its first RangeLearning
	// points (which score 0) and then learn those points in order. For live use. Default 0.
	RangeLearning int
	// RangeMargin widens a learned range by this fraction of its span on each side, so that a
	// stream that wanders a little beyond its first points keeps to the known levels. Only with
	// RangeLearning. Default 0.
	RangeMargin float64
	// BaseThreshold is the score at or above which the model rests (returns 0) for RestPeriod
	// points. Default 0.75.
	BaseThreshold float64
	// RestPeriod is the number of points after a score of BaseThreshold or more during which
	// the model returns 0 (it keeps learning). NAB uses its probationary length / 5, 150 for
	// files of 5,000 rows or more. Default 150. At least 1.
	RestPeriod int
	// MaxLeftSemiContextsLength bounds the size of a left semi-context learned by crossing.
	// Default 7.
	MaxLeftSemiContextsLength int
	// MaxActiveNeurons is the number of active contexts fed back as facts. Default 15.
	MaxActiveNeurons int
	// NumNormValueBits is the number of bits of a quantised value (2^bits levels). Default 3.
	NumNormValueBits int
	// MaxContexts caps the contexts learned (memory): once reached, no new context or
	// semi-context is added and the model scores with what it knows. 0 means no cap (NAB).
	// Default 0.
	MaxContexts int
}

// DefaultCADConfig returns NAB's configuration with the range [0, 100] (a percentage metric).
// For NAB files set Min and Max to the file's range; for a live stream of unknown range set
// RangeLearning (and MaxContexts to bound memory).
func DefaultCADConfig() CADConfig {
	return CADConfig{Min: 0, Max: 100, BaseThreshold: 0.75, RestPeriod: 150,
		MaxLeftSemiContextsLength: 7, MaxActiveNeurons: 15, NumNormValueBits: 3}
}

// Validate checks every field.
func (c CADConfig) Validate() error {
	switch {
	case c.RangeLearning < 0 || c.RangeLearning > 1<<20:
		return fmt.Errorf("%w: cad: RangeLearning must be in [0, 1048576], got %d", ErrConfig, c.RangeLearning)
	case c.RangeLearning == 0 && (!finite(c.Min) || !finite(c.Max) || c.Max < c.Min):
		return fmt.Errorf("%w: cad: Min and Max must be finite with Min <= Max, got [%v, %v]", ErrConfig, c.Min, c.Max)
	case !(c.RangeMargin >= 0 && c.RangeMargin <= 100):
		return fmt.Errorf("%w: cad: RangeMargin must be in [0, 100], got %v", ErrConfig, c.RangeMargin)
	case !(c.BaseThreshold > 0 && c.BaseThreshold <= 1):
		return fmt.Errorf("%w: cad: BaseThreshold must be in (0,1], got %v", ErrConfig, c.BaseThreshold)
	case c.RestPeriod < 1:
		return fmt.Errorf("%w: cad: RestPeriod must be >= 1, got %d", ErrConfig, c.RestPeriod)
	case c.MaxLeftSemiContextsLength < 1:
		return fmt.Errorf("%w: cad: MaxLeftSemiContextsLength must be >= 1, got %d", ErrConfig, c.MaxLeftSemiContextsLength)
	case c.MaxActiveNeurons < 1:
		return fmt.Errorf("%w: cad: MaxActiveNeurons must be >= 1, got %d", ErrConfig, c.MaxActiveNeurons)
	case c.NumNormValueBits < 1 || c.NumNormValueBits > 16:
		return fmt.Errorf("%w: cad: NumNormValueBits must be in [1,16], got %d", ErrConfig, c.NumNormValueBits)
	case c.MaxContexts < 0:
		return fmt.Errorf("%w: cad: MaxContexts must be >= 0, got %d", ErrConfig, c.MaxContexts)
	}
	return nil
}

const (
	sensorBase = 65536
	neuronBase = 1 << 31
)

// semi is a semi-context: a set of facts on the left or the right side of contexts.
type semi struct {
	facts   []int64 // its facts, in the order they were given
	hash    int64
	matched []int64 // facts of the current input that it contains ([0] in the original)
	count   int     // len(matched) at the last crossing ([2])
	ctx     intDict // left side only: right semi id → context id ([3])
}

// cadContext is a learned context: a left semi-context followed by a right one.
type cadContext struct {
	n0, n1, n2 int64   // predicted facts, confirmed facts, full activations
	right      []int64 // the right facts
	zero       bool    // a zero-level context (seen directly, not only by crossing)
	lh, rh     int64
}

type pair struct{ left, right []int64 }

// CAD is a port of NAB's Contextual Anomaly Detector OSE (nab/detectors/context_ose; the
// algorithm is M. Smirnov's). It reproduces the original's arithmetic and its walk order over
// learned contexts (including CPython 2.7's dict order and tuple hashes, which decide which
// contexts are created first and which become active), so that it scores NAB as published.
type CAD struct {
	cfg    CADConfig
	ready  bool      // range known
	warm   []float64 // RangeLearning buffer
	warmT  []int64
	min    float64
	step   float64
	maxBin float64

	leftFacts []int64
	lastPred  [2]uint64 // predicted sensor facts as a bitmask of fact−65536 (always < 128)
	history   []float64 // the last RestPeriod current scores (starts with 1.0)
	hpos      int

	semis        [2][]*semi
	semiByHash   [2]map[int64]int32
	factIndex    [2]map[int64][]int32
	crossed      [2][]int32
	contexts     []cadContext
	newContextID int32 // 0 stands for Python's False, which equals context id 0

	stamp   []uint32 // scratch: per-semi touch stamps for crossing
	stampN  uint32
	touched []int32
}

var _ detector.MetricModel = (*CAD)(nil)

// NewCAD builds a CAD OSE model.
func NewCAD(cfg CADConfig) (*CAD, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &CAD{cfg: cfg}
	m.reset()
	if cfg.RangeLearning == 0 {
		m.setRange(cfg.Min, cfg.Max)
	}
	return m, nil
}

func (m *CAD) reset() {
	m.ready = false
	m.warm, m.warmT = nil, nil
	m.leftFacts = nil
	m.lastPred = [2]uint64{}
	m.history = []float64{1.0}
	m.hpos = 0
	for lr := range 2 {
		m.semis[lr] = nil
		m.semiByHash[lr] = map[int64]int32{}
		m.factIndex[lr] = map[int64][]int32{}
		m.crossed[lr] = nil
	}
	m.contexts = nil
	m.newContextID = 0
	m.stamp = nil
}

func (m *CAD) setRange(lo, hi float64) {
	m.maxBin = math.Pow(2, float64(m.cfg.NumNormValueBits)) - 1
	full := hi - lo
	if full == 0 {
		full = m.maxBin
	}
	m.min, m.step, m.ready = lo, full/m.maxBin, true
}

// Algorithm returns "cad".
func (m *CAD) Algorithm() string { return "cad" }

// Contexts is the number of contexts learned so far (the model's memory grows with it).
func (m *CAD) Contexts() int { return len(m.contexts) }

// Observe scores v and learns it. t is not used.
func (m *CAD) Observe(t int64, v float64) float64 {
	if !finite(v) {
		return 1
	}
	if !m.ready {
		m.warm = append(m.warm, v)
		m.warmT = append(m.warmT, t)
		if len(m.warm) < m.cfg.RangeLearning {
			return 0
		}
		lo, hi := slices.Min(m.warm), slices.Max(m.warm)
		pad := (hi - lo) * m.cfg.RangeMargin
		m.setRange(lo-pad, hi+pad)
		warm := m.warm
		m.warm, m.warmT = nil, nil
		for _, x := range warm {
			m.score(x)
		}
		return 0
	}
	return m.score(v)
}

// sensorFacts quantises v into facts exactly as the original's bin() string handling does.
func (m *CAD) sensorFacts(v float64) []int64 {
	x := math.Trunc((v - m.min) / m.step)
	x = math.Max(math.Min(x, 1<<62), -(1 << 62))
	n := int64(x)
	neg := n < 0
	if neg {
		n = -n
	}
	bl := bits.Len64(uint64(n))
	length := bl
	if neg {
		length += 3 // "-0b" stays in the string and counts as zero bits
	}
	length = max(length, m.cfg.NumNormValueBits)
	out := make([]int64, length)
	for s := range length {
		bit := int64(0)
		if s < bl && n>>s&1 == 1 {
			bit = 1
		}
		out[s] = sensorBase + int64(s)*2 + bit
	}
	return out
}

func (m *CAD) score(v float64) float64 {
	facts := m.sensorFacts(v)
	predErr := false
	for _, f := range facts {
		o := f - sensorBase
		if o >= 128 || m.lastPred[o/64]&(1<<(o%64)) == 0 {
			predErr = true
		}
	}
	preds, sel, added := m.step1(facts)
	m.lastPred = preds
	cur := 0.0
	if predErr {
		cur = (1.0 - sel + added) / 2.0
	}
	ret := 0.0
	if slices.Max(m.history) < m.cfg.BaseThreshold {
		ret = cur
	}
	if len(m.history) < m.cfg.RestPeriod {
		m.history = append(m.history, cur)
	} else {
		m.history[m.hpos] = cur
		m.hpos = (m.hpos + 1) % len(m.history)
	}
	return ret
}

type activeCtx struct {
	id         int32
	n2, lh, rh int64
}

// step1 is the original's step(): cross the input with the learned contexts, learn, predict.
func (m *CAD) step1(facts []int64) (preds [2]uint64, sel, added float64) {
	cur := slices.Clone(facts)
	slices.Sort(cur)
	cur = slices.Compact(cur)

	uniq := map[[2]int64]struct{}{}
	newFlag := false
	if len(m.leftFacts) > 0 && len(cur) > 0 {
		z := pair{left: m.leftFacts, right: cur}
		uniq[[2]int64{pyTupleHash(z.left), pyTupleHash(z.right)}] = struct{}{}
		_, newFlag = m.contextsByFacts([]pair{z}, true)
	}
	m.cross(1, cur)
	active, numSel, pot := m.updateAndGetActive(newFlag)
	for _, p := range pot {
		uniq[[2]int64{pyTupleHash(p.left), pyTupleHash(p.right)}] = struct{}{}
	}
	if numSel > 0 {
		sel = float64(len(active)) / float64(numSel)
	}
	// The original sorts all active contexts by (activations, left hash, right hash), stably,
	// and keeps the last MaxActiveNeurons; keeping the top ones directly is the same selection
	// (an element equal to the current worst replaces it, as a later element sorts after).
	active = topActive(active, m.cfg.MaxActiveNeurons)
	left := slices.Clone(cur)
	for _, a := range active {
		left = append(left, neuronBase+int64(a.id))
	}
	slices.Sort(left)
	m.leftFacts = slices.Compact(left)

	numNew := 0
	if len(pot) > 0 {
		numNew, _ = m.contextsByFacts(pot, false)
	}
	preds = m.cross(0, m.leftFacts)
	if newFlag {
		numNew++
	}
	if newFlag && len(uniq) > 0 {
		added = float64(numNew) / float64(len(uniq))
	}
	return preds, sel, added
}

func cmpActive(a, b activeCtx) int {
	switch {
	case a.n2 != b.n2:
		return cmpInt(a.n2, b.n2)
	case a.lh != b.lh:
		return cmpInt(a.lh, b.lh)
	default:
		return cmpInt(a.rh, b.rh)
	}
}

func cmpInt(a, b int64) int {
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}

// topActive returns the k greatest elements of a (in no particular order), preferring later
// elements among equals, as taking the tail of a stable ascending sort does.
func topActive(a []activeCtx, k int) []activeCtx {
	if len(a) <= k {
		return a
	}
	best := make([]activeCtx, 0, k) // ascending
	for _, x := range a {
		if len(best) == k {
			if cmpActive(x, best[0]) < 0 {
				continue
			}
			best = best[1:]
		}
		i := len(best)
		for i > 0 && cmpActive(best[i-1], x) > 0 {
			i--
		}
		best = slices.Insert(best, i, x)
	}
	return best
}

// semiID finds or creates the semi-context of facts on side lr (ok false when the cap forbids
// creating it).
func (m *CAD) semiID(lr int, facts []int64, h int64) (int32, bool) {
	if id, ok := m.semiByHash[lr][h]; ok {
		return id, true
	}
	if m.cfg.MaxContexts > 0 && len(m.contexts) >= m.cfg.MaxContexts {
		return 0, false
	}
	id := int32(len(m.semis[lr]))
	m.semiByHash[lr][h] = id
	m.semis[lr] = append(m.semis[lr], &semi{facts: slices.Clone(facts), hash: h})
	for _, f := range facts {
		m.factIndex[lr][f] = append(m.factIndex[lr][f], id)
	}
	return id, true
}

// contextsByFacts is getContextByFacts: it learns the given contexts and returns how many were
// new; with zero set (one zero-level context) it returns whether that context was new.
func (m *CAD) contextsByFacts(list []pair, zero bool) (int, bool) {
	added := 0
	for _, p := range list {
		lh, rh := pyTupleHash(p.left), pyTupleHash(p.right)
		lid, ok1 := m.semiID(0, p.left, lh)
		rid, ok2 := m.semiID(1, p.right, rh)
		if !ok1 || !ok2 {
			if zero {
				return 0, false
			}
			continue
		}
		next := int32(len(m.contexts))
		ls := m.semis[0][lid]
		if m.cfg.MaxContexts > 0 && next >= int32(m.cfg.MaxContexts) {
			// At the cap: an existing context is still found, a new one is not made.
			j := -1
			if ls.ctx.keys != nil {
				if s := ls.ctx.slot(int64(rid)); ls.ctx.used[s] {
					j = int(ls.ctx.vals[s])
				}
			}
			if j < 0 {
				if zero {
					return 0, false
				}
				continue
			}
			if zero {
				m.contexts[j].zero = true
				return 0, false
			}
			continue
		}
		cid := ls.ctx.setDefault(int64(rid), next)
		if cid == next {
			added++
			m.contexts = append(m.contexts, cadContext{right: slices.Clone(p.right), zero: zero, lh: lh, rh: rh})
			if zero {
				m.newContextID = cid
				return 1, true
			}
		} else if zero {
			m.contexts[cid].zero = true
			return 0, false
		}
	}
	return added, false
}

// cross is contextCrosser without the learning step: it matches facts against the semi-contexts
// of side lr; for the left side it returns the facts predicted by the best contexts.
func (m *CAD) cross(lr int, facts []int64) (preds [2]uint64) {
	for _, id := range m.crossed[lr] {
		s := m.semis[lr][id]
		s.matched = s.matched[:0]
		s.count = 0
	}
	if n := len(m.semis[0]) + len(m.semis[1]); len(m.stamp) < n {
		m.stamp = append(m.stamp, make([]uint32, n-len(m.stamp)+n/2)...)
	}
	m.stampN++
	off := 0
	if lr == 1 {
		off = len(m.semis[0])
	}
	// Stamps index left semis at [0, len(left)) and right ones after; the right offset moves
	// as left semis are added, so stamps are only compared within one call.
	m.touched = m.touched[:0]
	for _, f := range facts {
		for _, id := range m.factIndex[lr][f] {
			s := m.semis[lr][id]
			s.matched = append(s.matched, f)
			if m.stamp[off+int(id)] != m.stampN {
				m.stamp[off+int(id)] = m.stampN
				m.touched = append(m.touched, id)
			}
		}
	}
	slices.Sort(m.touched)
	newCrossed := make([]int32, 0, len(m.touched))
	maxW := 0.0
	var best []int32
	for _, id := range m.touched {
		s := m.semis[lr][id]
		s.count = len(s.matched)
		newCrossed = append(newCrossed, id)
		if lr == 0 && len(s.facts) == s.count {
			s.ctx.each(func(_ int64, cid int32) {
				c := &m.contexts[cid]
				w := 0.0
				if c.n0 > 0 {
					w = float64(c.n1) / float64(c.n0)
				}
				if w > maxW {
					maxW = w
					best = append(best[:0], cid)
				} else if w == maxW {
					best = append(best, cid)
				}
			})
		}
	}
	m.crossed[lr] = newCrossed
	for _, cid := range best {
		for _, f := range m.contexts[cid].right {
			o := f - sensorBase
			if o >= 0 && o < 128 {
				preds[o/64] |= 1 << (o % 64)
			}
		}
	}
	return preds
}

// updateAndGetActive is updateContextsAndGetActive.
func (m *CAD) updateAndGetActive(newFlag bool) (active []activeCtx, numSel int, pot []pair) {
	for _, lid := range m.crossed[0] {
		ls := m.semis[0][lid]
		ls.ctx.each(func(rid int64, cid int32) {
			if m.newContextID == cid {
				return
			}
			c := &m.contexts[cid]
			rs := m.semis[1][rid]
			if len(ls.facts) == ls.count {
				numSel++
				c.n0 += int64(len(rs.facts))
				if rs.count > 0 {
					c.n1 += int64(rs.count)
					if len(rs.facts) == rs.count {
						c.n2++
						active = append(active, activeCtx{id: cid, n2: c.n2, lh: c.lh, rh: c.rh})
					} else if c.zero && newFlag && ls.count <= m.cfg.MaxLeftSemiContextsLength {
						pot = append(pot, pair{slices.Clone(ls.matched), slices.Clone(rs.matched)})
					}
				}
			} else if c.zero && newFlag && rs.count > 0 && ls.count <= m.cfg.MaxLeftSemiContextsLength {
				pot = append(pot, pair{slices.Clone(ls.matched), slices.Clone(rs.matched)})
			}
		})
	}
	m.newContextID = 0
	return active, numSel, pot
}
