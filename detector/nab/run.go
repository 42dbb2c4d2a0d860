package nab

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vigil-mesh/vigil/detector"
)

// ModelFactory builds a fresh model for one file. It may read the file's length (NAB gives
// detectors the probationary length) and, for detectors that use it as NAB allows, its value
// range (File.Min, File.Max).
type ModelFactory func(f *File) (detector.MetricModel, error)

// Run feeds every file of the corpus, row by row, to a fresh model and returns the scores.
func Run(c *Corpus, factory ModelFactory) ([][]float64, error) {
	out := make([][]float64, len(c.Files))
	for i := range c.Files {
		f := &c.Files[i]
		m, err := factory(f)
		if err != nil {
			return nil, fmt.Errorf("nab: %s: %w", f.Name, err)
		}
		s := make([]float64, len(f.Values))
		for j, v := range f.Values {
			x := m.Observe(f.Times[j], v)
			if !(x >= 0 && x <= 1) {
				return nil, fmt.Errorf("nab: %s: row %d: model %s returned %v, outside [0,1]", f.Name, j, m.Algorithm(), x)
			}
			s[j] = x
		}
		out[i] = s
	}
	return out, nil
}

// RoundLikeNAB rounds every score to 12 significant digits, in place. NAB's Python 2 pipeline
// writes each detector's scores to CSV with str(float), which keeps 12 significant digits, and
// scores what it reads back; a score of 0.99999999999995 is therefore scored as 1.0. The
// published scoreboard depends on it (windowedGaussian's optimal threshold is exactly 1.0), so
// nabbench rounds every model's scores the same way before scoring.
func RoundLikeNAB(scores [][]float64) {
	for _, s := range scores {
		for j, v := range s {
			r, err := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 12, 64), 64)
			if err == nil {
				s[j] = r
			}
		}
	}
}

// WriteResults writes NAB's results layout under dir: <dir>/<detector>/<category>/
// <detector>_<name>.csv with columns timestamp,value,anomaly_score,label.
func WriteResults(dir, detectorName string, c *Corpus, scores [][]float64) error {
	for i := range c.Files {
		f := &c.Files[i]
		cat, name := path.Split(f.Name)
		p := filepath.Join(dir, detectorName, filepath.FromSlash(cat), detectorName+"_"+name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		fh, err := os.Create(p)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(fh)
		fmt.Fprintln(w, "timestamp,value,anomaly_score,label")
		wi := 0
		for j := range f.Values {
			for wi < len(f.Windows) && f.Windows[wi].End < j {
				wi++
			}
			label := 0
			if wi < len(f.Windows) && f.Windows[wi].Start <= j {
				label = 1
			}
			fmt.Fprintf(w, "%s,%s,%s,%d\n", time.Unix(0, f.Times[j]).UTC().Format(dataTimeLayout),
				strconv.FormatFloat(f.Values[j], 'g', -1, 64), strconv.FormatFloat(scores[i][j], 'g', -1, 64), label)
		}
		if err := w.Flush(); err != nil {
			fh.Close()
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	return nil
}

// WriteScoreTable writes NAB's per-file table for one profile
// (<dir>/<detector>/<detector>_<profile>_scores.csv).
func WriteScoreTable(dir, detectorName string, r *Result) error {
	p := filepath.Join(dir, detectorName, detectorName+"_"+r.Profile.Name+"_scores.csv")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	fh, err := os.Create(p)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(fh)
	fmt.Fprintln(w, "Detector,Profile,File,Threshold,Score,TP,TN,FP,FN,Total_Count")
	var tot Counts
	n := 0
	for _, fr := range r.Files {
		fmt.Fprintf(w, "%s,%s,%s,%v,%v,%d,%d,%d,%d,%d\n", detectorName, r.Profile.Name, fr.File, r.Threshold, fr.Score, fr.TP, fr.TN, fr.FP, fr.FN, fr.Total)
		tot.TP += fr.TP
		tot.TN += fr.TN
		tot.FP += fr.FP
		tot.FN += fr.FN
		n += fr.Total
	}
	fmt.Fprintf(w, "Totals,,,,%v,%d,%d,%d,%d,%d\n", r.Raw, tot.TP, tot.TN, tot.FP, tot.FN, n)
	if err := w.Flush(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// LoadPublished reads NAB's results/final_results.json: detector → profile → normalised score.
func LoadPublished(path string) (map[string]map[string]float64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorpus, err)
	}
	var m map[string]map[string]float64
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorpus, path, err)
	}
	return m, nil
}
