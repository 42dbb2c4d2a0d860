package sequence

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

// refBand is the score rule written the slow, obvious way: sort the candidates.
func refBand(logits []float32, a, g int) float64 {
	type c struct {
		v float32
		i int
	}
	cs := make([]c, len(logits))
	for i, v := range logits {
		cs[i] = c{v, i}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].v > cs[j].v })
	r := 0
	for _, x := range cs {
		if x.v > logits[a] {
			r++
		}
	}
	if r < g {
		return 0.5 * (1 - math.Exp(float64(logits[a]-cs[0].v)))
	}
	return 1 - 0.5*math.Exp(float64(logits[a]-cs[g-1].v))
}

func TestBandScoreMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	top := make([]float32, 0, 64)
	for i := 0; i < 20000; i++ {
		n := 1 + r.IntN(40)
		l := make([]float32, n)
		for j := range l {
			l[j] = float32(r.IntN(7)) - 3 // many ties
			if r.IntN(2) == 0 {
				l[j] = float32(r.NormFloat64() * 3)
			}
		}
		a, g := r.IntN(n), 1+r.IntN(12)
		got, want := bandScore(l, a, g, top), refBand(l, a, g)
		if got != want {
			t.Fatalf("logits %v a=%d g=%d: %v, reference %v", l, a, g, got, want)
		}
		if got < 0 || got > 1 || (got >= 0.5) != (refRank(l, a) >= g) {
			t.Fatalf("logits %v a=%d g=%d: score %v breaks the band rule", l, a, g, got)
		}
	}
}

func refRank(l []float32, a int) int {
	r := 0
	for _, v := range l {
		if v > l[a] {
			r++
		}
	}
	return r
}

// refNGram scores a session by scanning the training sessions for every context: the
// definition of NGram's rule with no trie, no incremental state and no backoff bookkeeping.
func refNGram(train [][]detector.Action, n, g int, alpha float64, s []detector.Action) []float64 {
	const bosSym = int64(-1)
	seq := func(x []detector.Action) []int64 {
		out := []int64{bosSym}
		for _, a := range x {
			out = append(out, int64(a))
		}
		return out
	}
	// counts of what follows ctx (a suffix ending just before position i in some training
	// session); target 0 stands for the end of a session.
	follow := func(ctx []int64) map[detector.Action]int {
		m := map[detector.Action]int{}
		for _, t := range train {
			q := seq(t)
			for i := 1; i <= len(q); i++ { // q[i] is the target, len(q) = the end
				if i < len(ctx) {
					continue
				}
				match := true
				for k := range ctx {
					if q[i-len(ctx)+k] != ctx[k] {
						match = false
						break
					}
				}
				if !match {
					continue
				}
				var target detector.Action
				if i < len(q) {
					target = detector.Action(q[i])
				}
				if i < len(q) && target == 0 {
					continue
				}
				m[target]++
			}
		}
		return m
	}
	q := seq(s)
	var out []float64
	for i := 1; i <= len(q); i++ {
		var a detector.Action
		if i < len(q) {
			a = detector.Action(q[i])
			if a == 0 {
				out = append(out, 1)
				continue
			}
		}
		if follow(nil)[a] == 0 {
			out = append(out, 1)
			continue
		}
		// longest context (up to n-1) seen in training
		var cnt map[detector.Action]int
		for d := min(n-1, i); d >= 0; d-- {
			c := follow(q[i-d : i])
			if len(c) > 0 {
				cnt = c
				break
			}
		}
		ca := cnt[a]
		var vals []int
		r, mx := 0, 0
		for _, c := range cnt {
			vals = append(vals, c)
			if c > ca {
				r++
			}
			mx = max(mx, c)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(vals)))
		if ca > 0 && r < g {
			out = append(out, 0.5*(1-(float64(ca)+alpha)/(float64(mx)+alpha)))
			continue
		}
		cg := vals[min(g, len(vals))-1]
		out = append(out, 1-0.5*(float64(ca)+alpha)/(float64(cg)+alpha))
	}
	return out
}

// TestNGramMatchesReference: on random training sets and sessions, the trie-based model gives
// exactly the reference's scores, for several orders and g.
func TestNGramMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	draw := func(maxLen, vocab int) []detector.Action {
		s := make([]detector.Action, r.IntN(maxLen))
		for i := range s {
			s[i] = detector.Action(1 + r.IntN(vocab))
		}
		return s
	}
	for trial := 0; trial < 60; trial++ {
		n, g := 1+r.IntN(5), 1+r.IntN(4)
		vocab := 2 + r.IntN(6)
		train := make([][]detector.Action, 1+r.IntN(12))
		for i := range train {
			train[i] = draw(12, vocab)
		}
		c := DefaultNGramConfig()
		c.N, c.TopG = n, g
		m, err := NewNGram(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Fit(train); err != nil {
			t.Fatal(err)
		}
		for k := 0; k < 10; k++ {
			s := draw(15, vocab+1)
			if k%3 == 0 && len(s) > 0 {
				s[r.IntN(len(s))] = 0
			}
			got := scores(m, s, true)
			want := refNGram(train, n, g, c.Alpha, s)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("trial %d N=%d g=%d train %v\nsession %v step %d: model %v, reference %v\nall model %v\nall ref %v",
						trial, n, g, train, s, i, got[i], want[i], got, want)
				}
			}
		}
	}
}

// TestNGramContextCount: the dry run that enforces MaxContexts predicts exactly the contexts Fit
// creates, on a first and on a later Fit.
func TestNGramContextCount(t *testing.T) {
	for n := 1; n <= 6; n++ {
		c := DefaultNGramConfig()
		c.N = n
		m, _ := NewNGram(c)
		for i, train := range [][][]detector.Action{randomSessions(30, 9, uint64(n)), randomSessions(30, 12, uint64(n+10))} {
			want := m.contextsAfter(train)
			if err := m.Fit(train); err != nil {
				t.Fatal(err)
			}
			if m.Contexts() != want {
				t.Fatalf("N=%d fit %d: predicted %d contexts, Fit made %d", n, i, want, m.Contexts())
			}
		}
	}
}
