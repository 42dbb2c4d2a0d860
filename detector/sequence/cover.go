package sequence

import (
	"fmt"
	"math"
	"slices"

	"github.com/vigil-mesh/vigil/detector"
)

// CoverConfig configures a Cover model.
type CoverConfig struct {
	// MaxActions caps the symbols stored: the training actions plus two per session (its start
	// and end marks). Memory is 8 bytes per symbol plus 8 per session, and Fit needs 16 more
	// per symbol while it builds. Fit fails beyond it, having changed nothing. Default 1<<21
	// (at most 16 MiB stored); at most 1<<26.
	MaxActions int
	// Folds is how many parts the training sessions are split into to calibrate scores: each
	// part is scored against an index of the others, and these out-of-fold scores are what a
	// new session's score is compared with. 2 ≤ Folds ≤ 20. Default 5.
	Folds int
	// Prior is the weight, in actions, of the typical normal rate in the running score Observe
	// returns (so the first few actions of a session cannot raise it alone). 0 ≤ Prior ≤ 1<<20.
	// Default 32.
	Prior int
}

// DefaultCoverConfig returns the defaults documented on CoverConfig.
func DefaultCoverConfig() CoverConfig {
	return CoverConfig{MaxActions: 1 << 21, Folds: 5, Prior: 32}
}

// Validate checks every field, naming the first one that is wrong.
func (c CoverConfig) Validate() error {
	switch {
	case c.MaxActions < 1 || c.MaxActions > 1<<26:
		return fmt.Errorf("%w: MaxActions=%d, want 1..%d", ErrConfig, c.MaxActions, 1<<26)
	case c.Folds < 2 || c.Folds > 20:
		return fmt.Errorf("%w: Folds=%d, want 2..20", ErrConfig, c.Folds)
	case c.Prior < 0 || c.Prior > 1<<20:
		return fmt.Errorf("%w: Prior=%d, want 0..%d", ErrConfig, c.Prior, 1<<20)
	}
	return nil
}

// Symbols of the stored text: actions are shifted past the marks. symEnd (0) is what a read
// past the end of the text returns, below every stored symbol.
const (
	symEnd     uint32 = 0
	symUnknown uint32 = 1 // a training action 0: matches nothing (the query never looks it up)
	symStart   uint32 = 2 // a session's start
	symStop    uint32 = 3 // a session's end
	symShift   uint32 = 4 // action a is stored as a+symShift
	// maxCoverAction is the largest action id the model stores; larger ids score as unseen.
	maxCoverAction = detector.Action(math.MaxUint32 - symShift)
)

// coverIndex is a suffix array over the training sessions, each stored as start, actions, end.
type coverIndex struct {
	text []uint32
	sa   []int32
}

func newCoverIndex(sessions [][]detector.Action) *coverIndex {
	n := 0
	for _, s := range sessions {
		n += len(s) + 2
	}
	text := make([]uint32, 0, n)
	for _, s := range sessions {
		text = append(text, symStart)
		for _, a := range s {
			if a == 0 || a > maxCoverAction {
				text = append(text, symUnknown)
			} else {
				text = append(text, a+symShift)
			}
		}
		text = append(text, symStop)
	}
	return &coverIndex{text: text, sa: suffixArray(text)}
}

// sym is the symbol d places into the suffix at rank i.
func (x *coverIndex) sym(i int32, d int32) uint32 {
	p := int(x.sa[i]) + int(d)
	if p >= len(x.text) {
		return symEnd
	}
	return x.text[p]
}

// narrow returns the ranks in [lo,hi) (whose suffixes share their first d symbols) that have
// symbol c at offset d: an empty range when none has.
func (x *coverIndex) narrow(lo, hi, d int32, c uint32) (int32, int32) {
	l, h := lo, hi
	for l < h { // first rank with sym ≥ c
		m := int32(uint32(l+h) >> 1)
		if x.sym(m, d) < c {
			l = m + 1
		} else {
			h = m
		}
	}
	first := l
	h = hi
	for l < h { // first rank with sym > c
		m := int32(uint32(l+h) >> 1)
		if x.sym(m, d) <= c {
			l = m + 1
		} else {
			h = m
		}
	}
	return first, l
}

// match is the state of a greedy covering: the ranks [lo,hi) of the suffixes that begin with
// the current segment, of length d (d = 0: no segment open).
type match struct{ lo, hi, d int32 }

// step extends the open segment by symbol c, or starts a new segment at c. It reports whether a
// new segment started.
func (x *coverIndex) step(m *match, c uint32) bool {
	if m.d > 0 {
		if lo, hi := x.narrow(m.lo, m.hi, m.d, c); lo < hi {
			m.lo, m.hi, m.d = lo, hi, m.d+1
			return false
		}
	}
	lo, hi := x.narrow(0, int32(len(x.sa)), 0, c)
	if lo < hi {
		*m = match{lo, hi, 1}
	} else {
		*m = match{} // c occurs nowhere: a segment of its own, and the next symbol starts one
	}
	return true
}

func (x *coverIndex) start() match {
	var m match
	x.step(&m, symStart)
	return m
}

// rate is the covering rate of a whole session: the new segments its actions and end start
// (after the segment its start opens), per action and end.
func (x *coverIndex) rate(s []detector.Action) float64 {
	m := x.start()
	breaks := 0
	for _, a := range s {
		if a == 0 || a > maxCoverAction {
			breaks++
			m = match{}
			continue
		}
		if x.step(&m, a+symShift) {
			breaks++
		}
	}
	if x.step(&m, symStop) {
		breaks++
	}
	return float64(breaks) / float64(len(s)+1)
}

// Cover scores a session by how it is covered by stretches of the training sessions: reading
// the session (its start, its actions, its end) from the left, the model follows the longest
// stretch that occurs somewhere in training and starts a new one where it cannot go on. A
// session copied from training is one stretch; one spliced together from unrelated pieces, or
// holding new actions, needs many. The raw score is the number of new stretches per action
// (the covering similarity of Marteau, "Sequence Covering for Efficient Host-Based Intrusion
// Detection", IEEE TIFS 2019, with the session's start and end as symbols).
//
// The raw rate is calibrated against out-of-fold rates of the training sessions (CoverConfig.
// Folds): the score is where the rate falls among them (their empirical distribution,
// interpolated), with an exponential tail above their 90th percentile, so 0.5 is a typical
// normal session and a score near 1 one more broken than nearly every normal session.
//
// Session.Observe returns a running score (the rate so far, shrunk towards the typical normal
// rate by Prior actions) and End the session's score: Cover judges whole sessions, and End is
// the verdict. The index is a suffix array: Observe costs two binary searches.
type Cover struct {
	cfg      CoverConfig
	idx      *coverIndex
	sessions int
	ref      []float64 // out-of-fold rates, ascending
	tail     coverTail
}

var _ detector.SequenceModel = (*Cover)(nil)

// coverTail is the calibration above the reference's 90th percentile.
type coverTail struct {
	u, fu, beta float64 // where the tail starts, the calibrated score there, the mean excess
	prior       float64 // the median reference rate (1 when untrained)
}

const coverTailQuantile = 0.9

// NewCover returns an empty model, or the Validate error.
func NewCover(cfg CoverConfig) (*Cover, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Cover{cfg: cfg, idx: newCoverIndex(nil), tail: coverTail{prior: 1}}, nil
}

// Algorithm returns "cover".
func (m *Cover) Algorithm() string { return "cover" }

// Sessions returns the number of training sessions stored.
func (m *Cover) Sessions() int { return m.sessions }

// Fit adds sessions to the stored ones, rebuilds the index and recalibrates. It fails, having
// changed nothing, when the stored actions and marks would exceed MaxActions.
func (m *Cover) Fit(sessions [][]detector.Action) error {
	n := len(m.idx.text)
	for _, s := range sessions {
		n += len(s) + 2
	}
	if n > m.cfg.MaxActions {
		return fmt.Errorf("%w: %d training actions and session marks over MaxActions=%d", ErrTooLarge, n, m.cfg.MaxActions)
	}
	all := append(m.stored(), sessions...)
	m.build(all)
	return nil
}

// Feedback adds a session judged normal (a false positive) to the training sessions.
func (m *Cover) Feedback(session []detector.Action) error {
	return m.Fit([][]detector.Action{session})
}

// stored returns the training sessions back from the index (action 0 for an unknown one).
func (m *Cover) stored() [][]detector.Action {
	out := make([][]detector.Action, 0, m.sessions)
	var cur []detector.Action
	for _, c := range m.idx.text {
		switch c {
		case symStart:
			cur = []detector.Action{}
		case symStop:
			out = append(out, cur)
		case symUnknown:
			cur = append(cur, 0)
		default:
			cur = append(cur, c-symShift)
		}
	}
	return out
}

// build indexes sessions and calibrates against their out-of-fold rates.
func (m *Cover) build(sessions [][]detector.Action) {
	k := min(m.cfg.Folds, len(sessions))
	ref := make([]float64, 0, len(sessions))
	for f := 0; f < k; f++ {
		var train, held [][]detector.Action
		for i, s := range sessions {
			if i%k == f {
				held = append(held, s)
			} else {
				train = append(train, s)
			}
		}
		x := newCoverIndex(train)
		for _, s := range held {
			ref = append(ref, x.rate(s))
		}
	}
	slices.Sort(ref)
	m.idx = newCoverIndex(sessions)
	m.sessions = len(sessions)
	m.ref = ref
	m.tail = coverTail{prior: 1}
	if len(ref) == 0 {
		return
	}
	ui := max(0, min(len(ref)-1, int(math.Ceil(coverTailQuantile*float64(len(ref))))-1))
	u := ref[ui]
	k2, sum := 0, 0.0
	for _, r := range ref[ui+1:] {
		if r > u {
			k2++
			sum += r - u
		}
	}
	beta := 1e-9
	if k2 > 0 {
		beta = max(beta, sum/float64(k2))
	}
	m.tail = coverTail{u: u, beta: beta, prior: ref[len(ref)/2]}
	m.tail.fu = m.body(u)
}

// body is the interpolated mid-rank distribution of the reference at x ≤ the tail start: a
// reference value holding ranks i..j−1 (0-based, ties together) sits at (i+j)/2/n, and the
// score runs linearly between neighbouring values (and from 0 at rate 0 to the smallest).
func (m *Cover) body(x float64) float64 {
	n := len(m.ref)
	lo, _ := slices.BinarySearch(m.ref, x) // first ≥ x
	hi := lo
	for hi < n && m.ref[hi] == x {
		hi++
	}
	if hi > lo { // x is a reference value
		return float64(lo+hi) / 2 / float64(n)
	}
	// between the value below (ranks ending at lo) and the one above (ranks starting at lo)
	x0, f0 := 0.0, 0.0
	if lo > 0 {
		v := m.ref[lo-1]
		i := lo - 1
		for i > 0 && m.ref[i-1] == v {
			i--
		}
		x0, f0 = v, float64(i+lo)/2/float64(n)
	}
	v := m.ref[lo] // lo < n: x is below the tail start, a reference value
	j := lo
	for j < n && m.ref[j] == v {
		j++
	}
	x1, f1 := v, float64(lo+j)/2/float64(n)
	if x1 <= x0 {
		return f1
	}
	return f0 + (f1-f0)*(x-x0)/(x1-x0)
}

// calibrate maps a rate in [0,1] to a score in [0,1], increasing in the rate. Untrained, the
// rate is the score.
func (m *Cover) calibrate(r float64) float64 {
	if len(m.ref) == 0 {
		return r
	}
	if r <= m.tail.u {
		return m.body(r)
	}
	s := 1 - (1-m.tail.fu)*math.Exp(-(r-m.tail.u)/m.tail.beta)
	return min(max(s, 0), 1)
}

// Score returns the score of a whole session: the same as Start, Observe for each action, then
// End.
func (m *Cover) Score(session []detector.Action) float64 {
	return m.calibrate(m.idx.rate(session))
}

// Rate returns the raw covering rate of a whole session, before calibration: the stretches
// after the first needed to cover its start, actions and end, per action and end, in [0,1].
func (m *Cover) Rate(session []detector.Action) float64 { return m.idx.rate(session) }

// Start begins a session.
func (m *Cover) Start() detector.Session {
	return &coverSession{m: m, idx: m.idx, at: m.idx.start()}
}

type coverSession struct {
	m         *Cover
	idx       *coverIndex // the index at points into; a Fit or restore replaces the model's
	at        match
	breaks, n int
}

// follow re-anchors a session whose model was refitted or restored since its last action: its
// open segment pointed into the old index, so the next action starts a new one.
func (s *coverSession) follow() {
	if s.idx != s.m.idx {
		s.idx, s.at = s.m.idx, match{}
	}
}

// Observe follows a and returns the running score: the calibrated rate so far, shrunk towards
// the typical normal rate by Prior actions.
func (s *coverSession) Observe(a detector.Action) float64 {
	s.follow()
	s.n++
	if a == 0 || a > maxCoverAction {
		s.breaks++
		s.at = match{}
	} else if s.m.idx.step(&s.at, a+symShift) {
		s.breaks++
	}
	p := float64(s.m.cfg.Prior)
	return s.m.calibrate((float64(s.breaks) + p*s.m.tail.prior) / (float64(s.n) + p))
}

// End scores the whole session (its end included). The session must not be used after End.
func (s *coverSession) End() float64 {
	s.follow()
	b := s.breaks
	if s.m.idx.step(&s.at, symStop) {
		b++
	}
	return s.m.calibrate(float64(b) / float64(s.n+1))
}

var _ detector.Ender = (*coverSession)(nil)

const (
	cvMagic   = "VGCV"
	cvVersion = 1
)

// MarshalBinary writes the configuration and the training sessions; the index and the
// calibration are rebuilt from them on restore. The output is deterministic.
func (m *Cover) MarshalBinary() ([]byte, error) {
	e := &enc{}
	e.header(cvMagic, cvVersion)
	e.u32(uint32(m.cfg.Folds))
	e.u32(uint32(m.cfg.Prior))
	sessions := m.stored()
	e.u32(uint32(len(sessions)))
	for _, s := range sessions {
		e.u32s(s)
	}
	return e.b, nil
}

// UnmarshalBinary replaces the model's sessions with a checkpoint written by a model with the
// same Folds and Prior, refusing more actions and marks than MaxActions; it then rebuilds the index (a
// few hundred milliseconds for a million actions). On error the model is unchanged.
func (m *Cover) UnmarshalBinary(b []byte) error {
	d := &dec{b: b}
	d.header(cvMagic, cvVersion)
	d.match("Folds", uint64(d.u32("Folds")), uint64(m.cfg.Folds))
	d.match("Prior", uint64(d.u32("Prior")), uint64(m.cfg.Prior))
	ns := d.length("sessions", m.cfg.MaxActions/2, 4)
	sessions := make([][]detector.Action, 0, ns)
	total := 2 * ns // the marks
	for i := 0; i < ns && d.err == nil; i++ {
		na := d.length("session", m.cfg.MaxActions-total, 4)
		s := make([]detector.Action, na)
		for j := range s {
			s[j] = d.u32("action")
			if d.err == nil && s[j] > maxCoverAction {
				d.fail("action", "session %d action %d: id %d over %d", i, j, s[j], maxCoverAction)
			}
		}
		total += na
		sessions = append(sessions, s)
	}
	if err := d.end(); err != nil {
		return err
	}
	m.build(sessions)
	return nil
}

// suffixArray returns the suffixes of text in increasing order (a suffix that is a prefix of
// another sorts first), by prefix doubling with counting sorts: O(n log n) for text whose
// longest repeat is short, O(n log L) passes for a longest repeat of length L.
func suffixArray(text []uint32) []int32 {
	n := len(text)
	sa := make([]int32, n)
	if n == 0 {
		return sa
	}
	rank := make([]int32, n)
	next := make([]int32, n)
	for i := range sa {
		sa[i] = int32(i)
	}
	slices.SortFunc(sa, func(a, b int32) int {
		switch {
		case text[a] < text[b]:
			return -1
		case text[a] > text[b]:
			return 1
		}
		return int(a - b)
	})
	for i := 1; i < n; i++ {
		rank[sa[i]] = rank[sa[i-1]]
		if text[sa[i]] != text[sa[i-1]] {
			rank[sa[i]]++
		}
	}
	tmp := make([]int32, n)
	cnt := make([]int32, n+1)
	for k := 1; int(rank[sa[n-1]]) < n-1; k <<= 1 {
		// Order by the second key (the rank k places on; none sorts first), then stably by
		// the first.
		p := 0
		for i := n - k; i < n; i++ {
			if i >= 0 {
				tmp[p] = int32(i)
				p++
			}
		}
		for _, s := range sa {
			if int(s) >= k {
				tmp[p] = s - int32(k)
				p++
			}
		}
		clear(cnt)
		for _, r := range rank {
			cnt[r+1]++
		}
		for i := 1; i <= n; i++ {
			cnt[i] += cnt[i-1]
		}
		for _, s := range tmp {
			sa[cnt[rank[s]]] = s
			cnt[rank[s]]++
		}
		second := func(i int32) int32 {
			if int(i)+k < n {
				return rank[int(i)+k]
			}
			return -1
		}
		next[sa[0]] = 0
		for i := 1; i < n; i++ {
			a, b := sa[i-1], sa[i]
			next[b] = next[a]
			if rank[a] != rank[b] || second(a) != second(b) {
				next[b]++
			}
		}
		rank, next = next, rank
	}
	return sa
}
