package sequence

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

func testCover(t testing.TB) detector.SequenceModel {
	m, err := NewCover(DefaultCoverConfig())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// refSuffixArray sorts the suffixes by comparing them (a proper prefix sorts first).
func refSuffixArray(text []uint32) []int32 {
	sa := make([]int32, len(text))
	for i := range sa {
		sa[i] = int32(i)
	}
	slices.SortFunc(sa, func(a, b int32) int { return slices.Compare(text[a:], text[b:]) })
	return sa
}

func TestSuffixArrayMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for trial := 0; trial < 300; trial++ {
		n := r.IntN(200)
		text := make([]uint32, n)
		sigma := 1 + r.IntN(5)
		for i := range text {
			text[i] = uint32(r.IntN(sigma))
		}
		if trial%3 == 0 && n > 20 { // long repeats, as in duplicated sessions
			copy(text[n/2:], text[:n/2])
		}
		got, want := suffixArray(text), refSuffixArray(text)
		if !slices.Equal(got, want) {
			t.Fatalf("text %v:\n got %v\nwant %v", text, got, want)
		}
	}
}

// refRate covers a session greedily by brute force: from each position, the longest piece
// (of start, actions, end) found contiguous in one training session with its marks.
func refRate(train [][]detector.Action, s []detector.Action) float64 {
	const start, stop = ^detector.Action(0) - 1, ^detector.Action(0)
	wrap := func(x []detector.Action) []detector.Action {
		return append(append([]detector.Action{start}, x...), stop)
	}
	occurs := func(piece []detector.Action) bool {
		if slices.Contains(piece, 0) {
			return false // an unknown action matches nothing
		}
		for _, tr := range train {
			w := wrap(tr)
			for i := 0; i+len(piece) <= len(w); i++ {
				if slices.Equal(w[i:i+len(piece)], piece) {
					return true
				}
			}
		}
		return false
	}
	q := wrap(s)
	segments := 0
	for i := 0; i < len(q); {
		l := 1
		for i+l < len(q) && occurs(q[i:i+l+1]) {
			l++
		}
		if !occurs(q[i : i+l]) {
			l = 1
		}
		segments++
		i += l
	}
	return float64(segments-1) / float64(len(s)+1)
}

// TestCoverRateMatchesReference: the index's rate, the streamed session's raw rate and Score
// all agree with a brute-force greedy covering, on random sessions over a small alphabet.
func TestCoverRateMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 1))
	gen := func(n, sigma int) []detector.Action {
		s := make([]detector.Action, n)
		for i := range s {
			s[i] = detector.Action(r.IntN(sigma))
			if r.IntN(20) != 0 {
				s[i]++ // mostly known ids, sometimes 0
			}
		}
		return s
	}
	for trial := 0; trial < 100; trial++ {
		var train [][]detector.Action
		for i := r.IntN(6); i >= 0; i-- {
			train = append(train, gen(r.IntN(15), 4))
		}
		m, _ := NewCover(DefaultCoverConfig())
		if err := m.Fit(train); err != nil {
			t.Fatal(err)
		}
		for q := 0; q < 10; q++ {
			s := gen(r.IntN(12), 5)
			want := refRate(train, s)
			if got := m.idx.rate(s); got != want {
				t.Fatalf("train %v, session %v: rate %v, reference %v", train, s, got, want)
			}
			sess := m.Start()
			for _, a := range s {
				sess.Observe(a)
			}
			if got, want := sess.(Ender).End(), m.calibrate(want); got != want || got != m.Score(s) {
				t.Fatalf("session %v: End %v, Score %v, calibrated reference %v", s, got, m.Score(s), want)
			}
		}
	}
}

// TestCoverCalibration: the score increases with the rate, is 0 at rate 0 only when no normal
// rate is 0, sits at the middle of the reference at its median, and approaches 1 above it.
func TestCoverCalibration(t *testing.T) {
	m, _ := NewCover(DefaultCoverConfig())
	m.ref = []float64{0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.6, 0.7, 0.9}
	m.sessions = len(m.ref)
	ui := 8 // ceil(0.9·10)−1
	u := m.ref[ui]
	m.tail = coverTail{u: u, beta: 0.2, prior: m.ref[5]}
	m.tail.fu = m.body(u)
	prev := -1.0
	for r := 0.0; r <= 1; r += 0.01 {
		s := m.calibrate(r)
		if !(s >= 0 && s <= 1) || s < prev {
			t.Fatalf("rate %v: score %v after %v", r, s, prev)
		}
		prev = s
	}
	for _, c := range []struct{ rate, want float64 }{
		{0.1, 0.1},   // ranks 0,1 → (0+2)/2/10
		{0.5, 0.6},   // ranks 5,6 → (5+7)/2/10
		{0.05, 0.05}, // halfway from (0,0) to (0.1,0.1)
		{0.25, 0.3},  // halfway from (0.2,0.25) to (0.3,0.35)
	} {
		if s := m.calibrate(c.rate); math.Abs(s-c.want) > 1e-12 {
			t.Errorf("rate %v: %v, want %v", c.rate, s, c.want)
		}
	}
	if s := m.calibrate(0.7 + 0.6); s < 0.99 {
		t.Errorf("rate 1.3 (three mean excesses past the tail): %v", s)
	}
}

func readCoverTestdata(t *testing.T) (train, normal, anomalous [][]detector.Action) {
	f, err := os.Open("testdata/cover.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, _ := detector.NewVocabulary(detector.DefaultVocabularyConfig())
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		var s []detector.Action
		for _, name := range fields[1:] {
			if fields[0] == "train" {
				s = append(s, v.Add(name))
			} else {
				s = append(s, v.Lookup(name))
			}
		}
		switch fields[0] {
		case "train":
			train = append(train, s)
		case "normal":
			normal = append(normal, s)
		case "anomalous":
			anomalous = append(anomalous, s)
		default:
			t.Fatalf("testdata/cover.txt: line %q: want train, normal or anomalous", sc.Text())
		}
	}
	return train, normal, anomalous
}

// TestCoverTestdata: on the small programs of testdata/cover.txt, every anomalous session
// (a spawned shell, a new call, inserted steps, a reverse shell) scores above every normal one
// and at least 0.8 (21 training sessions make a coarse calibration).
func TestCoverTestdata(t *testing.T) {
	train, normal, anomalous := readCoverTestdata(t)
	m := testCover(t).(*Cover)
	if err := m.Fit(train); err != nil {
		t.Fatal(err)
	}
	hiNormal, loAnomalous := 0.0, 1.0
	for _, s := range normal {
		v := m.Score(s)
		t.Logf("normal    %.3f %v", v, s)
		hiNormal = max(hiNormal, v)
	}
	for _, s := range anomalous {
		v := m.Score(s)
		t.Logf("anomalous %.3f %v", v, s)
		loAnomalous = min(loAnomalous, v)
	}
	if loAnomalous < 0.8 || hiNormal >= loAnomalous {
		t.Fatalf("highest normal %.3f, lowest anomalous %.3f: want every anomalous session above every normal one, and ≥ 0.8", hiNormal, loAnomalous)
	}
	// a training session is one stretch: it scores as low as the model can score
	for _, s := range train {
		if v := m.Score(s); v > m.calibrate(0) {
			t.Fatalf("training session %v scored %v", s, v)
		}
	}
}

// TestCoverOnCorpus: on the shared corpus, normal sessions score at most the middle (every
// held-out rate is 0), while a foreign action, an out-of-order pair and a premature end score
// near 1 at the end; the running score of a normal session stays low throughout.
func TestCoverOnCorpus(t *testing.T) {
	m := testCover(t)
	if err := m.Fit(corpus(300, 1)); err != nil {
		t.Fatal(err)
	}
	for _, s := range corpus(20, 2) {
		for i, v := range scores(m, s, true) {
			if v > 0.5 {
				t.Fatalf("normal session %v: step %d scored %v", s, i, v)
			}
		}
	}
	for _, s := range [][]detector.Action{{1, 2, 99, 3, 4, 5, 6, 7}, {1, 3, 2, 4, 5, 6, 7}, {1, 2, 3, 4}, {1, 0, 2, 3, 4, 5, 6, 7}} {
		if v := Max(scores(m, s, true)[len(s):]); v < 0.99 {
			t.Errorf("%v: end scored %v", s, v)
		}
	}
}

func TestCoverConfigAndLimits(t *testing.T) {
	for _, c := range []struct {
		field string
		mod   func(*CoverConfig)
	}{
		{"MaxActions", func(c *CoverConfig) { c.MaxActions = 0 }},
		{"MaxActions", func(c *CoverConfig) { c.MaxActions = 1<<26 + 1 }},
		{"Folds", func(c *CoverConfig) { c.Folds = 1 }},
		{"Folds", func(c *CoverConfig) { c.Folds = 21 }},
		{"Prior", func(c *CoverConfig) { c.Prior = -1 }},
	} {
		cfg := DefaultCoverConfig()
		c.mod(&cfg)
		if _, err := NewCover(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.field+"=") {
			t.Errorf("%s: %v", c.field, err)
		}
	}
	cfg := DefaultCoverConfig()
	cfg.MaxActions = 60
	m, _ := NewCover(cfg)
	if err := m.Fit(corpus(3, 1)); err != nil {
		t.Fatal(err)
	}
	before, _ := m.MarshalBinary()
	if err := m.Fit(corpus(10, 2)); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "MaxActions=60") {
		t.Fatalf("over MaxActions: %v", err)
	}
	after, _ := m.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Fatal("a refused Fit changed the model")
	}
	// a checkpoint holding more actions than this model's MaxActions is refused
	big := testCover(t)
	_ = big.Fit(corpus(10, 2))
	cp, _ := big.MarshalBinary()
	if err := m.UnmarshalBinary(cp); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("checkpoint over MaxActions: %v", err)
	}
	// and one written with other Folds names the field
	c2 := DefaultCoverConfig()
	c2.Folds = 3
	m2, _ := NewCover(c2)
	if err := m2.UnmarshalBinary(cp); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "Folds") {
		t.Fatalf("Folds mismatch: %v", err)
	}
}

// TestCoverFitAccumulates: two Fits equal one Fit of both batches, and Feedback makes a flagged
// session normal.
func TestCoverFitAccumulates(t *testing.T) {
	a, b := testCover(t), testCover(t)
	_ = a.Fit(corpus(30, 1))
	_ = a.Fit(corpus(30, 2))
	_ = b.Fit(append(corpus(30, 1), corpus(30, 2)...))
	x, _ := a.MarshalBinary()
	y, _ := b.MarshalBinary()
	if !bytes.Equal(x, y) {
		t.Fatal("two Fits differ from one")
	}
	fp := []detector.Action{1, 2, 3, 4, 5, 6, 3, 7}
	c := a.(*Cover)
	if v := c.Score(fp); v < 0.9 {
		t.Fatalf("%v scored %v before feedback", fp, v)
	}
	if err := c.Feedback(fp); err != nil {
		t.Fatal(err)
	}
	if v := c.Score(fp); v > c.calibrate(0) {
		t.Fatalf("%v scored %v after feedback", fp, v)
	}
}

// TestCoverSessionAcrossRefit: a session open while its model is refitted or restored goes on
// against the new index (its next action starts a new stretch) instead of reading the old one.
func TestCoverSessionAcrossRefit(t *testing.T) {
	m := testCover(t)
	_ = m.Fit(corpus(50, 1))
	s := m.Start()
	for _, a := range []detector.Action{1, 2, 3, 4, 5} {
		s.Observe(a)
	}
	small := testCover(t)
	_ = small.Fit([][]detector.Action{{1}})
	cp, _ := small.MarshalBinary()
	if err := m.UnmarshalBinary(cp); err != nil {
		t.Fatal(err)
	}
	for _, a := range []detector.Action{4, 5, 6, 7} {
		if v := s.Observe(a); !(v >= 0 && v <= 1) {
			t.Fatalf("score %v", v)
		}
	}
	if v := s.(Ender).End(); !(v >= 0 && v <= 1) {
		t.Fatalf("end %v", v)
	}
}
