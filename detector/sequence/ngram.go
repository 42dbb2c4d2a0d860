package sequence

import (
	"fmt"
	"slices"

	"github.com/vigil-mesh/vigil/detector"
)

// NGramConfig configures an NGram model.
type NGramConfig struct {
	// N is the order: an action is predicted from the N−1 actions before it in its session (the
	// session's start counts as an action, so the first action is predicted too). 1 ≤ N ≤ 16.
	// Default 3.
	N int
	// TopG is DeepLog's g: an action is a candidate when fewer than TopG actions are more likely
	// after its context. 1 ≤ TopG ≤ 1024. Default 9.
	TopG int
	// Alpha is the pseudo-count added to every count when likelihoods are compared inside a band
	// (score.go); it keeps ratios finite for actions never seen after a context. 0 < Alpha ≤ 1e6.
	// Default 0.5.
	Alpha float64
	// Online makes every Session.Observe add the action it scored to the counts after scoring it,
	// so the model keeps learning from what it sees. Default false (learn only in Fit and
	// Feedback).
	Online bool
	// MaxContexts caps the number of distinct contexts the model stores (memory ≈ 100 bytes per
	// context plus 8 per successor). Fit fails beyond it; online learning stops adding contexts.
	// Default 1<<20.
	MaxContexts int
}

// DefaultNGramConfig returns the defaults documented on NGramConfig.
func DefaultNGramConfig() NGramConfig {
	return NGramConfig{N: 3, TopG: 9, Alpha: 0.5, MaxContexts: 1 << 20}
}

// Validate checks every field, naming the first one that is wrong.
func (c NGramConfig) Validate() error {
	switch {
	case c.N < 1 || c.N > 16:
		return fmt.Errorf("%w: N=%d, want 1..16", ErrConfig, c.N)
	case c.TopG < 1 || c.TopG > 1024:
		return fmt.Errorf("%w: TopG=%d, want 1..1024", ErrConfig, c.TopG)
	case !(c.Alpha > 0 && c.Alpha <= 1e6):
		return fmt.Errorf("%w: Alpha=%v, want 0 < Alpha ≤ 1e6", ErrConfig, c.Alpha)
	case c.MaxContexts < 1 || c.MaxContexts > maxCheckpointNodes:
		return fmt.Errorf("%w: MaxContexts=%d, want 1..%d", ErrConfig, c.MaxContexts, maxCheckpointNodes)
	}
	return nil
}

// bos is the context symbol for "start of session"; it cannot collide with an Action (uint32).
const bos = uint64(1) << 32

type ngCount struct {
	a detector.Action
	c uint32
}

// ngNode is one context: the actions seen after it and how often. Node 0 is the empty context;
// a child of node x under key k is the context "k, then x's context" (contexts grow backwards
// in time, so backing off is walking up).
type ngNode struct {
	child map[uint64]int32
	next  []ngCount
	total uint32
}

func (n *ngNode) count(a detector.Action) uint32 {
	for _, x := range n.next {
		if x.a == a {
			return x.c
		}
	}
	return 0
}

// NGram is an n-gram next-action model scored with DeepLog's top-g rule (score.go). Backoff:
// an action is judged after the longest context (up to N−1 previous actions) that was seen in
// training. An action never seen after that context is never a candidate.
type NGram struct {
	cfg   NGramConfig
	nodes []ngNode
	cnts  []float32 // scratch: the counts after a context
	top   []float32 // scratch for the g-th largest count
}

var _ detector.SequenceModel = (*NGram)(nil)

// NewNGram returns an empty model, or the Validate error.
func NewNGram(cfg NGramConfig) (*NGram, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &NGram{cfg: cfg, nodes: []ngNode{{}}, top: make([]float32, 0, cfg.TopG)}, nil
}

// Algorithm returns "ngram".
func (m *NGram) Algorithm() string { return "ngram" }

// LearnsOnline reports Config.Online: whether every scored action is also learned.
func (m *NGram) LearnsOnline() bool { return m.cfg.Online }

// Contexts returns the number of contexts stored (including the empty one).
func (m *NGram) Contexts() int { return len(m.nodes) }

// Fit adds the counts of sessions. It may be called again; counts accumulate. It fails, having
// added nothing, if the contexts would exceed MaxContexts.
func (m *NGram) Fit(sessions [][]detector.Action) error {
	// Check the limit on a dry run first, so a refused Fit changes nothing.
	if n := m.contextsAfter(sessions); n > m.cfg.MaxContexts {
		return fmt.Errorf("%w: %d contexts over MaxContexts=%d", ErrTooLarge, n, m.cfg.MaxContexts)
	}
	hist := make([]uint64, 0, m.cfg.N)
	for _, s := range sessions {
		hist = append(hist[:0], bos)
		for _, a := range s {
			if a != 0 {
				m.add(hist, a, true)
			}
			hist = push(hist, uint64(a), m.cfg.N-1)
		}
		m.add(hist, end, true)
	}
	return nil
}

// Feedback adds a session judged normal (a false positive) to the counts: DeepLog's feedback.
func (m *NGram) Feedback(session []detector.Action) error {
	return m.Fit([][]detector.Action{session})
}

// contextsAfter counts the contexts the model would hold after fitting sessions.
func (m *NGram) contextsAfter(sessions [][]detector.Action) int {
	type key struct {
		parent int64 // an existing node (≥ 0) or a new one (< 0)
		k      uint64
	}
	extra := make(map[key]int64)
	// walk follows hist's suffixes as add would, recording the contexts add would create.
	walk := func(hist []uint64) {
		var cur int64
		for d := 1; d <= len(hist) && d <= m.cfg.N-1; d++ {
			k := hist[len(hist)-d]
			if cur >= 0 {
				if c, ok := m.nodes[cur].child[k]; ok {
					cur = int64(c)
					continue
				}
			}
			id, ok := extra[key{cur, k}]
			if !ok {
				id = -int64(len(extra)) - 1
				extra[key{cur, k}] = id
			}
			cur = id
		}
	}
	hist := make([]uint64, 0, m.cfg.N)
	for _, s := range sessions {
		hist = append(hist[:0], bos)
		for _, a := range s {
			if a != 0 {
				walk(hist)
			}
			hist = push(hist, uint64(a), m.cfg.N-1)
		}
		walk(hist) // the end of the session is counted after the last context too
	}
	return len(m.nodes) + len(extra)
}

// push appends k to the history, keeping the last keep entries.
func push(hist []uint64, k uint64, keep int) []uint64 {
	if keep == 0 {
		return hist[:0]
	}
	if len(hist) == keep {
		copy(hist, hist[1:])
		hist = hist[:keep-1]
	}
	return append(hist, k)
}

// add counts a after every suffix of hist up to N−1 long. create says whether new contexts may
// be made (false once MaxContexts is reached online).
func (m *NGram) add(hist []uint64, a detector.Action, create bool) {
	cur := 0
	bump(&m.nodes[0], a)
	for d := 1; d <= len(hist) && d <= m.cfg.N-1; d++ {
		k := hist[len(hist)-d]
		c, ok := m.nodes[cur].child[k]
		if !ok {
			if !create || len(m.nodes) >= m.cfg.MaxContexts {
				return
			}
			c = int32(len(m.nodes))
			if m.nodes[cur].child == nil {
				m.nodes[cur].child = make(map[uint64]int32)
			}
			m.nodes[cur].child[k] = c
			m.nodes = append(m.nodes, ngNode{})
		}
		cur = int(c)
		bump(&m.nodes[cur], a)
	}
}

func bump(n *ngNode, a detector.Action) {
	n.total++
	for i := range n.next {
		if n.next[i].a == a {
			n.next[i].c++
			return
		}
	}
	n.next = append(n.next, ngCount{a, 1})
}

// end is the successor recorded when a session ends (action 0 is never counted otherwise).
const end detector.Action = 0

// score scores a after hist; a == end scores the session's end.
func (m *NGram) score(hist []uint64, a detector.Action) float64 {
	if m.nodes[0].count(a) == 0 {
		return 1
	}
	best := 0
	cur := 0
	for d := 1; d <= len(hist) && d <= m.cfg.N-1; d++ {
		c, ok := m.nodes[cur].child[hist[len(hist)-d]]
		if !ok {
			break
		}
		cur = int(c)
		if m.nodes[cur].total > 0 {
			best = cur
		}
	}
	n := &m.nodes[best]
	g := m.cfg.TopG
	alpha := m.cfg.Alpha
	ca := n.count(a)
	r, mx := 0, uint32(0)
	for _, x := range n.next {
		if x.c > ca {
			r++
		}
		mx = max(mx, x.c)
	}
	if ca > 0 && r < g {
		return 0.5 * (1 - (float64(ca)+alpha)/(float64(mx)+alpha))
	}
	// Outside the candidates: compare with the g-th candidate (or the last one when fewer
	// than g actions were ever seen after this context).
	m.cnts = m.cnts[:0]
	for _, x := range n.next {
		m.cnts = append(m.cnts, float32(x.c))
	}
	cg := float64(kthLargest(m.cnts, min(g, len(m.cnts)), m.top))
	return 1 - 0.5*(float64(ca)+alpha)/(cg+alpha)
}

// Start begins a session.
func (m *NGram) Start() detector.Session {
	h := make([]uint64, 1, m.cfg.N)
	h[0] = bos
	return &ngSession{m: m, hist: h}
}

type ngSession struct {
	m    *NGram
	hist []uint64
}

// Observe scores a after the session so far, then moves the session on (and, when the model
// is Online, counts it).
func (s *ngSession) Observe(a detector.Action) float64 {
	if a == 0 { // "never seen": unusual, and part of the context that follows
		s.hist = push(s.hist, 0, s.m.cfg.N-1)
		return 1
	}
	sc := s.m.score(s.hist, a)
	if s.m.cfg.Online {
		s.m.add(s.hist, a, true)
	}
	s.hist = push(s.hist, uint64(a), s.m.cfg.N-1)
	return sc
}

const (
	ngMagic   = "VGNG"
	ngVersion = 1
)

// MarshalBinary writes the configuration and every count. The output is deterministic.
func (m *NGram) MarshalBinary() ([]byte, error) {
	e := &enc{}
	e.header(ngMagic, ngVersion)
	e.u32(uint32(m.cfg.N))
	e.u32(uint32(m.cfg.TopG))
	e.f64(m.cfg.Alpha)
	e.u32(uint32(len(m.nodes)))
	keys := make([]uint64, 0, 16)
	for i := range m.nodes {
		n := &m.nodes[i]
		e.u32(n.total)
		next := slices.Clone(n.next)
		slices.SortFunc(next, func(x, y ngCount) int { return int(int64(x.a) - int64(y.a)) })
		e.u32(uint32(len(next)))
		for _, x := range next {
			e.u32(x.a)
			e.u32(x.c)
		}
		keys = keys[:0]
		for k := range n.child {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		e.u32(uint32(len(keys)))
		for _, k := range keys {
			e.u64(k)
			e.u32(uint32(n.child[k]))
		}
	}
	return e.b, nil
}

// UnmarshalBinary replaces the model's counts with a checkpoint written by a model with the
// same N, TopG and Alpha. It refuses truncated, corrupt or inconsistent input, and then leaves
// the model unchanged.
func (m *NGram) UnmarshalBinary(b []byte) error {
	d := &dec{b: b}
	d.header(ngMagic, ngVersion)
	d.match("N", uint64(d.u32("N")), uint64(m.cfg.N))
	d.match("TopG", uint64(d.u32("TopG")), uint64(m.cfg.TopG))
	if a := d.f64("Alpha"); d.err == nil && a != m.cfg.Alpha {
		d.fail("Alpha", "checkpoint has %v, this model's Config has %v", a, m.cfg.Alpha)
	}
	nn := d.length("contexts", min(m.cfg.MaxContexts, maxCheckpointNodes), 12)
	if d.err == nil && nn == 0 {
		d.fail("contexts", "no root context")
	}
	nodes := make([]ngNode, nn)
	referenced := make([]bool, nn)
	for i := 0; i < nn && d.err == nil; i++ {
		n := &nodes[i]
		n.total = d.u32("context total")
		nx := d.length("successors", maxCheckpointVocab, 8)
		n.next = make([]ngCount, nx)
		var sum uint64
		for j := range n.next {
			n.next[j] = ngCount{d.u32("successor"), d.u32("successor count")}
			if d.err == nil && (n.next[j].c == 0 || (j > 0 && n.next[j].a <= n.next[j-1].a)) {
				d.fail("successor", "context %d entry %d: zero count, or not ascending", i, j)
			}
			sum += uint64(n.next[j].c)
		}
		if d.err == nil && sum != uint64(n.total) {
			d.fail("context total", "context %d total %d, its counts sum to %d", i, n.total, sum)
		}
		nc := d.length("children", maxCheckpointNodes, 12)
		if nc > 0 {
			n.child = make(map[uint64]int32, nc)
		}
		var prev uint64
		for j := 0; j < nc && d.err == nil; j++ {
			k, c := d.u64("child key"), d.u32("child")
			switch {
			case d.err != nil:
			case j > 0 && k <= prev:
				d.fail("child key", "context %d: keys not ascending", i)
			case int(c) <= i || int(c) >= nn || referenced[c]:
				d.fail("child", "context %d: child %d out of order, out of range or shared", i, c)
			default:
				referenced[c] = true
				n.child[k] = int32(c)
			}
			prev = k
		}
	}
	if err := d.end(); err != nil {
		return err
	}
	m.nodes = nodes
	return nil
}

// End scores the end of the session (the model counts session ends like an action), and, when
// the model is Online, counts it. The session must not be used after End.
func (s *ngSession) End() float64 {
	sc := s.m.score(s.hist, end)
	if s.m.cfg.Online {
		s.m.add(s.hist, end, true)
	}
	return sc
}

// sessionBytes estimates a session's memory: the struct and its history.
func (s *ngSession) sessionBytes() int { return 8 + 24 + 8*cap(s.hist) }
