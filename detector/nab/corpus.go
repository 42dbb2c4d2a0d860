package nab

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrCorpus is wrapped by every error about the corpus files.
var ErrCorpus = errors.New("nab: corpus")

// maxRowsPerFile caps a data file's length before allocation (NAB's largest file has 22,695 rows).
const maxRowsPerFile = 1 << 22

// Window is one labelled anomaly window, as row indices into its file (both inclusive).
type Window struct {
	Start, End int
}

// File is one NAB data file: its rows and its anomaly windows.
type File struct {
	// Name is the path relative to the data folder, e.g. "realKnownCause/nyc_taxi.csv".
	Name string
	// Times are the row timestamps in Unix nanoseconds (NAB timestamps are UTC wall times).
	Times []int64
	// Values are the row values.
	Values []float64
	// Windows are the anomaly windows in time order.
	Windows []Window
}

// Min and Max return the smallest and largest value of the file (what NAB hands detectors as
// inputMin/inputMax).
func (f *File) Min() float64 {
	m := f.Values[0]
	for _, v := range f.Values {
		m = min(m, v)
	}
	return m
}

// Max returns the largest value of the file.
func (f *File) Max() float64 {
	m := f.Values[0]
	for _, v := range f.Values {
		m = max(m, v)
	}
	return m
}

// Corpus is the NAB data set: every data file with its windows, sorted by Name.
type Corpus struct {
	Files []File
}

// NumWindows is the number of labelled windows in the corpus.
func (c *Corpus) NumWindows() int {
	n := 0
	for i := range c.Files {
		n += len(c.Files[i].Windows)
	}
	return n
}

const (
	dataTimeLayout   = "2006-01-02 15:04:05"
	windowTimeLayout = "2006-01-02 15:04:05.000000"
)

// LoadCorpus reads root/data/**.csv and root/labels/combined_windows.json. Every file named in
// the windows must exist and every window edge must be a row timestamp of its file.
func LoadCorpus(root string) (*Corpus, error) {
	wpath := filepath.Join(root, "labels", "combined_windows.json")
	raw, err := os.ReadFile(wpath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorpus, err)
	}
	var labels map[string][][2]string
	if err := json.Unmarshal(raw, &labels); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorpus, wpath, err)
	}
	dataDir := filepath.Join(root, "data")
	var names []string
	err = filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".csv") {
			return nil
		}
		rel, err := filepath.Rel(dataDir, p)
		if err != nil {
			return err
		}
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorpus, err)
	}
	sort.Strings(names)
	c := &Corpus{}
	for _, name := range names {
		wl, ok := labels[name]
		if !ok {
			return nil, fmt.Errorf("%w: %s: file has no entry in %s", ErrCorpus, name, wpath)
		}
		f, err := readDataFile(filepath.Join(dataDir, filepath.FromSlash(name)))
		if err != nil {
			return nil, err
		}
		f.Name = name
		idx := make(map[int64]int, len(f.Times))
		for i, t := range f.Times {
			if _, dup := idx[t]; !dup {
				idx[t] = i
			}
		}
		for k, w := range wl {
			var edge [2]int
			for j, s := range w {
				t, err := time.Parse(windowTimeLayout, s)
				if err != nil {
					return nil, fmt.Errorf("%w: %s: window %d of %s: %v", ErrCorpus, wpath, k, name, err)
				}
				i, ok := idx[t.UnixNano()]
				if !ok {
					return nil, fmt.Errorf("%w: %s: window %d of %s: %q is not a row timestamp", ErrCorpus, wpath, k, name, s)
				}
				edge[j] = i
			}
			if edge[1] < edge[0] {
				return nil, fmt.Errorf("%w: %s: window %d of %s ends before it starts", ErrCorpus, wpath, k, name)
			}
			if len(f.Windows) > 0 && edge[0] <= f.Windows[len(f.Windows)-1].End {
				return nil, fmt.Errorf("%w: %s: window %d of %s overlaps or precedes the previous one", ErrCorpus, wpath, k, name)
			}
			f.Windows = append(f.Windows, Window{Start: edge[0], End: edge[1]})
		}
		c.Files = append(c.Files, *f)
	}
	if len(c.Files) == 0 {
		return nil, fmt.Errorf("%w: no .csv file under %s", ErrCorpus, dataDir)
	}
	return c, nil
}

// readDataFile reads a NAB "timestamp,value" CSV.
func readDataFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorpus, err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	f := &File{}
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if line == 1 {
			if text != "timestamp,value" {
				return nil, fmt.Errorf("%w: %s:1: header is %q, want \"timestamp,value\"", ErrCorpus, path, text)
			}
			continue
		}
		if text == "" {
			continue
		}
		if len(f.Times) >= maxRowsPerFile {
			return nil, fmt.Errorf("%w: %s: more than %d rows", ErrCorpus, path, maxRowsPerFile)
		}
		ts, vs, ok := strings.Cut(text, ",")
		if !ok {
			return nil, fmt.Errorf("%w: %s:%d: want \"timestamp,value\", got %q", ErrCorpus, path, line, text)
		}
		t, err := time.Parse(dataTimeLayout, ts)
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d: timestamp: %v", ErrCorpus, path, line, err)
		}
		v, err := strconv.ParseFloat(vs, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d: value: %v", ErrCorpus, path, line, err)
		}
		f.Times = append(f.Times, t.UnixNano())
		f.Values = append(f.Values, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorpus, path, err)
	}
	if len(f.Times) == 0 {
		return nil, fmt.Errorf("%w: %s: no rows", ErrCorpus, path)
	}
	return f, nil
}

// ReadScoreFile reads the anomaly_score column of a NAB results file (a CSV whose header names an
// "anomaly_score" column), one score per row.
func ReadScoreFile(path string) ([]float64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorpus, err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	col := -1
	var out []float64
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Split(strings.TrimSpace(sc.Text()), ",")
		if line == 1 {
			for i, h := range fields {
				if h == "anomaly_score" {
					col = i
				}
			}
			if col < 0 {
				return nil, fmt.Errorf("%w: %s:1: no anomaly_score column", ErrCorpus, path)
			}
			continue
		}
		if len(fields) == 1 && fields[0] == "" {
			continue
		}
		if col >= len(fields) {
			return nil, fmt.Errorf("%w: %s:%d: %d fields, anomaly_score is field %d", ErrCorpus, path, line, len(fields), col+1)
		}
		if len(out) >= maxRowsPerFile {
			return nil, fmt.Errorf("%w: %s: more than %d rows", ErrCorpus, path, maxRowsPerFile)
		}
		v, err := strconv.ParseFloat(fields[col], 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d: anomaly_score: %v", ErrCorpus, path, line, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorpus, path, err)
	}
	return out, nil
}
