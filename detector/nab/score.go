package nab

import (
	"fmt"
	"math"
	"sort"
)

// ProbationPercent is NAB's probationary fraction of each file.
const ProbationPercent = 0.15

// ProbationaryLength is the number of leading rows of an n-row file that NAB does not score:
// min(floor(0.15·n), 0.15·5000) (nab/sweeper.py _getProbationaryLength).
func ProbationaryLength(n int) int {
	return int(math.Min(math.Floor(ProbationPercent*float64(n)), ProbationPercent*5000))
}

// scaledSigmoid is NAB's scaled sigmoid of a relative position (sweeper.py).
func scaledSigmoid(x float64) float64 {
	if x >= 3.0 {
		return -1.0
	}
	return 2/(1+math.Exp(5*x)) - 1.0
}

// point is one scorable row (past the probationary period) with its sweep score.
type point struct {
	score  float64 // the detector's anomaly score
	sweep  float64 // weighted contribution if detected
	window int32   // corpus-wide window id, or -1 outside every window
	file   int32
}

// sweepFile computes NAB's per-row sweep scores of one file (sweeper.py calcSweepScore) and
// appends the scorable rows to pts. windowBase is the corpus id of the file's first window.
func sweepFile(f *File, scores []float64, p Profile, fileIdx, windowBase int, pts []point) []point {
	maxTP := scaledSigmoid(-1.0)
	prob := ProbationaryLength(len(scores))
	cur := -1        // index into f.Windows of the window we are in, or -1
	prevRight := -1  // right index of the previous window, -1 if none yet
	prevWidth := 0.0 // width of the previous window
	next := 0        // next window to enter
	for i, s := range scores {
		if next < len(f.Windows) && i == f.Windows[next].Start {
			cur = next
			next++
		}
		var w float64
		win := int32(-1)
		if cur >= 0 {
			wd := f.Windows[cur]
			width := float64(wd.End - wd.Start + 1)
			pos := -float64(wd.End-i+1) / width
			w = scaledSigmoid(pos) * p.TPWeight / maxTP
			win = int32(windowBase + cur)
		} else {
			pos := 3.0
			if prevRight >= 0 {
				pos = math.Abs(float64(prevRight-i)) / (prevWidth - 1)
			}
			w = scaledSigmoid(pos) * p.FPWeight
		}
		if i >= prob {
			pts = append(pts, point{score: s, sweep: w, window: win, file: int32(fileIdx)})
		}
		if cur >= 0 && i == f.Windows[cur].End {
			prevRight = i
			prevWidth = float64(f.Windows[cur].End - f.Windows[cur].Start + 1)
			cur = -1
		}
	}
	return pts
}

// Counts are NAB's row counts at a threshold (rows past the probationary period).
type Counts struct {
	TP, TN, FP, FN int
}

// FileResult is one row of NAB's per-file score table at the chosen threshold.
type FileResult struct {
	File  string
	Score float64
	Counts
	// Total is the file's number of rows (NAB's Total_Count).
	Total int
}

// Result is a detector's NAB result for one profile.
type Result struct {
	Profile Profile
	// Threshold is the optimised threshold: a row is a detection when its score >= Threshold.
	Threshold float64
	// Raw is the corpus score at Threshold (sum of the per-file scores).
	Raw float64
	// Null and Perfect are the normalisation anchors: the score of a detector that detects
	// nothing and numWindows·tpWeight.
	Null, Perfect float64
	// Normalized is 100·(Raw − Null)/(Perfect − Null), NAB's published figure.
	Normalized float64
	// Files are the per-file rows at Threshold, in corpus order.
	Files []FileResult
}

// Evaluate scores a detector over the corpus for one profile: NAB's threshold optimisation over
// all files (optimizer.py with sweeper.calcScoreByThreshold), then per-file scoring at that
// threshold and normalisation. scores[i] holds one anomaly score per row of c.Files[i].
func Evaluate(c *Corpus, scores [][]float64, p Profile) (*Result, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(scores) != len(c.Files) {
		return nil, fmt.Errorf("nab: %d score series for %d files", len(scores), len(c.Files))
	}
	var pts []point
	base := 0
	for i := range c.Files {
		f := &c.Files[i]
		if len(scores[i]) != len(f.Times) {
			return nil, fmt.Errorf("nab: %s: %d scores for %d rows", f.Name, len(scores[i]), len(f.Times))
		}
		for j, s := range scores[i] {
			if math.IsNaN(s) {
				return nil, fmt.Errorf("nab: %s: row %d: score is NaN", f.Name, j)
			}
		}
		pts = sweepFile(f, scores[i], p, i, base, pts)
		base += len(f.Windows)
	}
	numWindows := base

	// Windows seen among the scorable rows start at −fnWeight (a window inside the
	// probationary period would not count, as in NAB).
	windowVal := make([]float64, numWindows)
	seen := make([]bool, numWindows)
	for _, q := range pts {
		if q.window >= 0 && !seen[q.window] {
			seen[q.window] = true
			windowVal[q.window] = -p.FNWeight
		}
	}
	null := 0.0
	for w := range windowVal {
		null += windowVal[w]
	}

	sort.SliceStable(pts, func(a, b int) bool { return pts[a].score > pts[b].score })
	bestScore, bestThr := null, 1.1
	// fp and win are the two parts of NAB's scoreParts sum, kept incrementally (NAB re-sums the
	// window parts at each threshold; the difference is rounding in the last bits).
	fp, win := 0.0, null
	cur := 1.1
	sum := func() float64 { return fp + win }
	for _, q := range pts {
		if q.score != cur {
			if s := sum(); s > bestScore {
				bestScore, bestThr = s, cur
			}
			cur = q.score
		}
		if q.window < 0 {
			fp += q.sweep
		} else if q.sweep > windowVal[q.window] {
			win += q.sweep - windowVal[q.window]
			windowVal[q.window] = q.sweep
		}
	}
	if s := sum(); s > bestScore {
		bestScore, bestThr = s, cur
	}

	return scoreAt(c, scores, p, bestThr, null, float64(numWindows)*p.TPWeight), nil
}

// EvaluateAt scores a detector over the corpus for one profile at a given threshold, without
// optimising it (what NAB's "score" step does with the thresholds in config/thresholds.json).
func EvaluateAt(c *Corpus, scores [][]float64, p Profile, threshold float64) (*Result, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(scores) != len(c.Files) {
		return nil, fmt.Errorf("nab: %d score series for %d files", len(scores), len(c.Files))
	}
	null := 0.0
	for i := range c.Files {
		f := &c.Files[i]
		if len(scores[i]) != len(f.Times) {
			return nil, fmt.Errorf("nab: %s: %d scores for %d rows", f.Name, len(scores[i]), len(f.Times))
		}
		null += scoreFileAt(f, scores[i], p, math.Inf(1)).Score
	}
	return scoreAt(c, scores, p, threshold, null, float64(c.NumWindows())*p.TPWeight), nil
}

func scoreAt(c *Corpus, scores [][]float64, p Profile, thr, null, perfect float64) *Result {
	res := &Result{Profile: p, Threshold: thr, Null: null, Perfect: perfect}
	for i := range c.Files {
		fr := scoreFileAt(&c.Files[i], scores[i], p, thr)
		res.Files = append(res.Files, fr)
		res.Raw += fr.Score
	}
	res.Normalized = 100 * (res.Raw - res.Null) / (res.Perfect - res.Null)
	return res
}

// scoreFileAt is NAB's per-file score at a threshold (sweeper.scoreDataSet): every row with
// score >= thr past the probationary period is a detection.
func scoreFileAt(f *File, scores []float64, p Profile, thr float64) FileResult {
	pts := sweepFile(f, scores, p, 0, 0, nil)
	fr := FileResult{File: f.Name, Total: len(scores)}
	best := make(map[int32]float64)
	fp := 0.0
	for _, q := range pts {
		if q.window >= 0 {
			if _, ok := best[q.window]; !ok {
				best[q.window] = -p.FNWeight
			}
		}
		detected := q.score >= thr
		switch {
		case q.window < 0 && detected:
			fr.FP++
			fp += q.sweep
		case q.window < 0:
			fr.TN++
		case detected:
			fr.TP++
			best[q.window] = max(best[q.window], q.sweep)
		default:
			fr.FN++
		}
	}
	fr.Score = fp
	for w := int32(0); w < int32(len(f.Windows)); w++ {
		if v, ok := best[w]; ok {
			fr.Score += v
		}
	}
	return fr
}
