package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/catalog"
)

// detectOptions are vigil detect's flags.
type detectOptions struct {
	timeColumn string
	columns    []string
	delimiter  string
	sequences  bool
	sessScore  string
	trainRows  int
	train      string
	algorithm  string
	params     []string
	out        string
}

// maxColumns caps the columns of a CSV (and so a vector model's dimension).
const maxColumns = 256

func newDetectCmd() *cobra.Command {
	var o detectOptions
	cmd := &cobra.Command{
		Use:   "detect [FILE]",
		Short: "Score a CSV of metrics or a file of action sequences offline",
		Long: `detect runs one of the detector's models over a file and writes every input row back with
an added anomaly_score column in [0,1]. FILE is read from standard input when absent or "-".

CSV input has a header. --time-column names the time column (RFC 3339, "2006-01-02 15:04:05"
as NAB uses, or Unix seconds; empty = row numbers); --columns picks the numeric columns
(default: every other column). A metric algorithm (threshold, ensemble, …) runs one model per
column and the row's score is the highest; a vector algorithm (hst) scores the columns together.

With --sequences, FILE holds one session per line as space-separated actions, and the output
is session,anomaly_score (the session's line number and its score); the sequence model is
fitted on the --train file or the first --train-rows sessions. --session-score says how a
session is scored: max (default: its highest per-action score), end (the score of its end: the
verdict of a model that judges whole sessions, such as cover) or mean (the mean of its action
scores and its end's, as the ADFA-LD benchmark ranks sessions).

Baseline: --train FILE is learned first (same format, not written out); --train-rows N makes
the first N rows of FILE the baseline: they are learned and written with anomaly_score 0.
Without either, the models learn as they go: a model scores 0 until it has seen enough rows
to know what normal is (hst: its window, 256 rows by default; the calibrated metric models: a
warm-up of their own). On a short file give --train-rows, or a smaller window (--param window=64).

A row whose time is before the previous row's is scored at the previous row's time. Bad input
(a non-numeric value, a missing column, a ragged row, an unparsable time) is an error naming
the file, line and column, and writes nothing to --out.`,
		Example: `  vigil detect --algorithm hst --columns value --param trees=32 data.csv
  vigil detect --algorithm threshold --param threshold=80% --columns cpu --out scored.csv metrics.csv
  vigil detect --sequences --algorithm ngram --train normal.txt sessions.txt
  vigil detect --sequences --algorithm cover --session-score end --train normal.txt sessions.txt`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("detect takes at most one FILE, got %q", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			in := "-"
			if len(args) == 1 {
				in = args[0]
			}
			return runDetect(cmd, o, in)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.timeColumn, "time-column", "timestamp", "name of the time column (empty: use row numbers)")
	f.StringSliceVar(&o.columns, "columns", nil, "numeric columns to score (default: all but the time column)")
	f.StringVar(&o.delimiter, "delimiter", ",", "CSV field delimiter (one character; \\t for tab)")
	f.BoolVar(&o.sequences, "sequences", false, "FILE holds action sequences, one session per line")
	f.StringVar(&o.sessScore, "session-score", "max", "with --sequences: a session's score, max (highest action score), end (its end's score) or mean (of its actions' and end's)")
	f.IntVar(&o.trainRows, "train-rows", 0, "learn a baseline from the first N rows (written with score 0)")
	f.StringVar(&o.train, "train", "", "learn a baseline from this file first (same format as FILE)")
	f.StringVar(&o.algorithm, "algorithm", "", "model to run, one of: "+strings.Join(catalog.Names(), ", ")+" (default hst; for --sequences, required)")
	f.StringArrayVar(&o.params, "param", nil, "model parameter key=value (repeatable), e.g. --param trees=32")
	f.StringVarP(&o.out, "out", "o", "", "write here instead of standard output")
	return cmd
}

func runDetect(cmd *cobra.Command, o detectOptions, in string) error {
	if o.trainRows < 0 {
		return usagef("--train-rows %d is negative", o.trainRows)
	}
	delim, err := parseDelimiter(o.delimiter)
	if err != nil {
		return err
	}
	params := map[string]any{}
	for _, p := range o.params {
		k, v, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return usagef("--param %q: want key=value", p)
		}
		if _, dup := params[k]; dup {
			return usagef("--param %s given twice", k)
		}
		params[k] = v
	}
	switch o.sessScore {
	case "max", "end", "mean":
	default:
		return usagef("--session-score %q: want max, end or mean", o.sessScore)
	}
	if o.sessScore != "max" && !o.sequences {
		return usagef("--session-score applies to --sequences only")
	}
	if o.algorithm == "" && !o.sequences {
		o.algorithm = "hst"
	}
	if o.algorithm == "" {
		return usagef("--sequences needs --algorithm (a sequence model)")
	}
	entry, err := catalog.Lookup(o.algorithm)
	if err != nil {
		return usageError{err}
	}
	if o.sequences != (entry.Kind == catalog.Sequence) {
		if o.sequences {
			return usagef("--algorithm %s is a %s model; --sequences needs a sequence model", o.algorithm, entry.Kind)
		}
		return usagef("--algorithm %s is a sequence model; use it with --sequences", o.algorithm)
	}

	var result []byte
	if o.sequences {
		result, err = detectSequences(o, params, in)
	} else {
		result, err = detectCSV(o, params, delim, in)
	}
	if err != nil {
		return err
	}
	if o.out == "" {
		_, err = cmd.OutOrStdout().Write(result)
		return err
	}
	tmp := o.out + ".tmp"
	if err := os.WriteFile(tmp, result, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, o.out)
}

func parseDelimiter(s string) (rune, error) {
	if s == `\t` || s == "tab" {
		return '\t', nil
	}
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || n != len(s) || r == utf8.RuneError || r == '"' || r == '\r' || r == '\n' {
		return 0, usagef("--delimiter %q: want one character (not a quote or newline)", s)
	}
	return r, nil
}

func openInput(name string) ([]byte, string, error) {
	if name == "-" {
		b, err := io.ReadAll(os.Stdin)
		return b, "stdin", err
	}
	b, err := os.ReadFile(name)
	return b, filepath.Base(name), err
}

// table is a parsed CSV: header, rows, the values of the chosen columns and each row's time.
type table struct {
	header []string
	cols   []string // the value columns, in order
	rows   [][]string
	values [][]float64 // [row][chosen column]
	times  []int64
}

// readTable parses a CSV for detect. Errors name the file, line and column.
func readTable(data []byte, file string, delim rune, timeColumn string, columns []string) (*table, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = delim
	r.ReuseRecord = false
	header, err := r.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file: want a header line", file)
	}
	if err != nil {
		return nil, csvError(file, err)
	}
	if len(header) > maxColumns+1 {
		return nil, fmt.Errorf("%s:1: %d columns, more than %d", file, len(header), maxColumns+1)
	}
	index := map[string]int{}
	for i, h := range header {
		if _, dup := index[h]; dup {
			return nil, fmt.Errorf("%s:1: column %q appears twice in the header", file, h)
		}
		index[h] = i
	}
	timeIdx := -1
	if timeColumn != "" {
		i, ok := index[timeColumn]
		if !ok {
			return nil, fmt.Errorf("%s:1: no time column %q in the header %q (set --time-column, or --time-column '' for none)", file, timeColumn, header)
		}
		timeIdx = i
	}
	var chosen []int
	if len(columns) == 0 {
		for i := range header {
			if i != timeIdx {
				chosen = append(chosen, i)
			}
		}
	} else {
		for _, c := range columns {
			i, ok := index[c]
			if !ok {
				return nil, fmt.Errorf("%s:1: no column %q in the header %q", file, c, header)
			}
			if i == timeIdx {
				return nil, fmt.Errorf("%s:1: column %q is the time column, not a value", file, c)
			}
			chosen = append(chosen, i)
		}
	}
	if len(chosen) == 0 {
		return nil, fmt.Errorf("%s:1: no value columns besides the time column", file)
	}
	t := &table{header: header}
	for _, i := range chosen {
		t.cols = append(t.cols, header[i])
	}
	last := int64(math.MinInt64)
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvError(file, err)
		}
		line, _ := r.FieldPos(0)
		row := make([]float64, len(chosen))
		for k, i := range chosen {
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[i]), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%s:%d: column %q: %q is not a finite number", file, line, header[i], rec[i])
			}
			row[k] = v
		}
		ts := int64(len(t.rows)) * int64(time.Second)
		if timeIdx >= 0 {
			ts, err = parseTime(rec[timeIdx])
			if err != nil {
				return nil, fmt.Errorf("%s:%d: column %q: %v", file, line, header[timeIdx], err)
			}
			// Models take non-decreasing time; real data has clock steps back (NAB's
			// machine_temperature_system_failure has one), so such a row is given the
			// previous row's time rather than refused.
			ts = max(ts, last)
		}
		last = ts
		t.rows = append(t.rows, rec)
		t.values = append(t.values, row)
		t.times = append(t.times, ts)
	}
	return t, nil
}

func csvError(file string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return fmt.Errorf("%s:%d: ragged row: its field count differs from the header's", file, pe.StartLine)
		}
		return fmt.Errorf("%s:%d: column %d: %v", file, pe.Line, pe.Column, pe.Err)
	}
	return fmt.Errorf("%s: %w", file, err)
}

// parseTime accepts RFC 3339, "2006-01-02 15:04:05" (UTC, as NAB writes it) and Unix seconds.
func parseTime(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixNano(), nil
	}
	if t, err := time.Parse("2006-01-02 15:04:05", s); err == nil {
		return t.UnixNano(), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && math.Abs(f) < 9e9 {
		return int64(math.Round(f * 1e9)), nil
	}
	return 0, fmt.Errorf("cannot read %q as a time (want RFC 3339, 2006-01-02 15:04:05 or Unix seconds)", s)
}

// scorer scores one row of values.
type scorer func(t int64, x []float64) float64

func buildScorer(algorithm string, dim int, params map[string]any) (scorer, error) {
	entry, _ := catalog.Lookup(algorithm)
	if entry.Kind == catalog.Vector {
		m, err := catalog.NewVector(algorithm, dim, params)
		if err != nil {
			return nil, usageError{err}
		}
		return m.Observe, nil
	}
	models := make([]detector.MetricModel, dim)
	for i := range models {
		m, err := catalog.NewMetric(algorithm, params)
		if err != nil {
			return nil, usageError{err}
		}
		models[i] = m
	}
	return func(t int64, x []float64) float64 {
		s := 0.0
		for i, m := range models {
			s = max(s, m.Observe(t, x[i]))
		}
		return s
	}, nil
}

func detectCSV(o detectOptions, params map[string]any, delim rune, in string) ([]byte, error) {
	data, name, err := openInput(in)
	if err != nil {
		return nil, err
	}
	tab, err := readTable(data, name, delim, o.timeColumn, o.columns)
	if err != nil {
		return nil, err
	}
	var train *table
	if o.train != "" {
		tdata, tname, err := openInput(o.train)
		if err != nil {
			return nil, err
		}
		if train, err = readTable(tdata, tname, delim, o.timeColumn, o.columns); err != nil {
			return nil, err
		}
		if strings.Join(train.cols, "\x00") != strings.Join(tab.cols, "\x00") {
			return nil, fmt.Errorf("%s has value columns %q, %s has %q", tname, train.cols, name, tab.cols)
		}
	}
	if o.trainRows > len(tab.rows) {
		return nil, usagef("--train-rows %d, but %s has %d rows", o.trainRows, name, len(tab.rows))
	}
	score, err := buildScorer(o.algorithm, len(tab.cols), params)
	if err != nil {
		return nil, err
	}
	if train != nil {
		for i, x := range train.values {
			score(train.times[i], x)
		}
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Comma = delim
	_ = w.Write(append(append([]string(nil), tab.header...), "anomaly_score"))
	for i, rec := range tab.rows {
		s := score(tab.times[i], tab.values[i])
		if i < o.trainRows {
			s = 0
		}
		_ = w.Write(append(rec, strconv.FormatFloat(s, 'f', 6, 64)))
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}

// maxSessionActions caps one session's length.
const maxSessionActions = 1 << 20

// readSessions splits a sequences file into sessions of action strings, one per line.
func readSessions(data []byte, file string) ([][]string, error) {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) > maxSessionActions {
			return nil, fmt.Errorf("%s:%d: %d actions, more than %d", file, line, len(fields), maxSessionActions)
		}
		out = append(out, fields)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", file, line+1, err)
	}
	return out, nil
}

// actions maps a session to ids; add gives new actions ids (baseline), else they are Unseen.
func actions(vocab *detector.Vocabulary, s []string, add bool) []detector.Action {
	out := make([]detector.Action, len(s))
	for i, a := range s {
		if add {
			out[i] = vocab.Add(a)
		} else {
			out[i] = vocab.Lookup(a)
		}
	}
	return out
}

func detectSequences(o detectOptions, params map[string]any, in string) ([]byte, error) {
	data, name, err := openInput(in)
	if err != nil {
		return nil, err
	}
	sessions, err := readSessions(data, name)
	if err != nil {
		return nil, err
	}
	vcfg := detector.DefaultVocabularyConfig()
	vcfg.MaxSize = 1 << 16
	vocab, _ := detector.NewVocabulary(vcfg)
	var fit [][]detector.Action
	if o.train != "" {
		tdata, tname, err := openInput(o.train)
		if err != nil {
			return nil, err
		}
		base, err := readSessions(tdata, tname)
		if err != nil {
			return nil, err
		}
		for _, s := range base {
			fit = append(fit, actions(vocab, s, true))
		}
	}
	if o.trainRows > len(sessions) {
		return nil, usagef("--train-rows %d, but %s has %d sessions", o.trainRows, name, len(sessions))
	}
	for _, s := range sessions[:o.trainRows] {
		fit = append(fit, actions(vocab, s, true))
	}
	if len(fit) == 0 {
		return nil, usagef("--sequences needs a baseline: --train FILE or --train-rows N")
	}
	m, err := catalog.NewSequence(o.algorithm, params)
	if err != nil {
		return nil, usageError{err}
	}
	if err := m.Fit(fit); err != nil {
		return nil, fmt.Errorf("fitting %s: %w", o.algorithm, err)
	}
	var buf bytes.Buffer
	buf.WriteString("session,anomaly_score\n")
	for i, s := range sessions {
		score := 0.0
		if i >= o.trainRows {
			if score, err = sessionScore(m, actions(vocab, s, false), o.sessScore); err != nil {
				return nil, err
			}
		}
		fmt.Fprintf(&buf, "%d,%s\n", i+1, strconv.FormatFloat(score, 'f', 6, 64))
	}
	return buf.Bytes(), nil
}

// sessionScore runs one session through m and aggregates its scores as --session-score says:
// max of the action scores, the end's score, or the mean of the action scores and the end's.
func sessionScore(m detector.SequenceModel, s []detector.Action, how string) (float64, error) {
	sess := m.Start()
	hi, sum := 0.0, 0.0
	for _, a := range s {
		v := sess.Observe(a)
		hi, sum = max(hi, v), sum+v
	}
	if how == "max" {
		return hi, nil
	}
	e, ok := sess.(detector.Ender)
	if !ok {
		return 0, usagef("--session-score %s: the %s model does not score a session's end", how, m.Algorithm())
	}
	end := e.End()
	if how == "end" {
		return end, nil
	}
	return (sum + end) / float64(len(s)+1), nil
}
