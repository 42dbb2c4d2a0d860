package seqbench

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/sequence"
)

// full is set by `make bench-detect-seq` (VIGIL_BENCH_SEQ=1): the full training runs. Without it
// the tests below run a reduced version that stays within a few seconds each.
var full = os.Getenv("VIGIL_BENCH_SEQ") == "1"

// modelSpec is one row of the benchmark tables.
type modelSpec struct {
	name string
	make func() (detector.SequenceModel, error)
}

func ngramSpec(n int) modelSpec {
	return modelSpec{fmt.Sprintf("ngram N=%d top-9", n), func() (detector.SequenceModel, error) {
		c := sequence.DefaultNGramConfig()
		c.N = n
		return sequence.NewNGram(c)
	}}
}

func lstmSpec(hidden, layers, epochs int) modelSpec {
	return lstmBatchSpec(hidden, layers, epochs, sequence.DefaultLSTMConfig().BatchSize)
}

func lstmBatchSpec(hidden, layers, epochs, batch int) modelSpec {
	name := fmt.Sprintf("lstm H=%d L=%d top-9, %d epochs", hidden, layers, epochs)
	if batch != sequence.DefaultLSTMConfig().BatchSize {
		name += fmt.Sprintf(", batch %d", batch)
	}
	return modelSpec{name, func() (detector.SequenceModel, error) {
		c := sequence.DefaultLSTMConfig()
		c.Hidden, c.Layers, c.Epochs, c.BatchSize = hidden, layers, epochs, batch
		return sequence.NewLSTM(c)
	}}
}

func coverSpec() modelSpec {
	return modelSpec{"cover", func() (detector.SequenceModel, error) {
		return sequence.NewCover(sequence.DefaultCoverConfig())
	}}
}

// adfaSeqScores keeps the trace scores of the sequence models TestADFABench ran, by row name,
// for the ensembles of TestADFATraceBench in the same run.
var adfaSeqScores = map[string]Scores{}

func dataDir(t *testing.T) string {
	t.Helper()
	d, err := DataDir(".")
	if err != nil {
		t.Skipf("skipping: the benchmark data is not here (%v); it lives in ../shared/data beside the repository", err)
	}
	return d
}

// TestHDFSBench runs the reduced-normal-test protocol (5 folds over hdfs_train, recall on every
// abnormal session) and prints the table. Reduced mode: the n-gram in full, the LSTM with fewer
// epochs. Either way each row must reach a quality floor, so a broken model fails the test.
func TestHDFSBench(t *testing.T) {
	dir := dataDir(t)
	normal, err := ReadSessions(filepath.Join(dir, "hdfs", "hdfs_train"))
	if err != nil {
		t.Fatal(err)
	}
	abnormal, err := ReadSessions(filepath.Join(dir, "hdfs", "hdfs_test_abnormal"))
	if err != nil {
		t.Fatal(err)
	}
	if len(normal) != 4855 || len(abnormal) != 16838 {
		t.Fatalf("read %d normal and %d abnormal sessions, the data README says 4,855 and 16,838", len(normal), len(abnormal))
	}
	type row struct {
		spec    modelSpec
		withEnd bool
		floorF1 float64
	}
	rows := []row{
		{ngramSpec(3), true, 0.9},
		{ngramSpec(3), false, 0.7},
		{lstmSpec(32, 1, 3), true, 0.9},
	}
	if full {
		rows = []row{
			{ngramSpec(3), false, 0.7},
			{ngramSpec(3), true, 0.9},
			{ngramSpec(5), true, 0.9},
			{lstmSpec(32, 1, 10), false, 0.7},
			{lstmSpec(32, 1, 10), true, 0.9},
			{lstmSpec(64, 2, 10), true, 0.9},
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nHDFS, reduced normal test (5-fold over %d normal sessions; %d abnormal)\n", len(normal), len(abnormal))
	b.WriteString("| model | session end scored | precision | recall | F1 | FP / normal | FPR | precision projected to 553,366 normal | training (5 folds) |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		res, err := HDFS(r.spec.make, normal, abnormal, 5, 0.5, r.withEnd)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "| %s | %v | %.3f | %.3f | %.3f | %d / %d | %.2f%% | %.3f | %s |\n", r.spec.name, r.withEnd,
			res.Precision, res.Recall, res.F1, res.FP, res.Normal, 100*res.FPR, res.ProjectedPrecision, res.Train.Round(10*time.Millisecond))
		if res.F1 < r.floorF1 {
			t.Errorf("%s (end %v): F1 %.3f below the floor %.2f", r.spec.name, r.withEnd, res.F1, r.floorF1)
		}
	}
	b.WriteString("| DeepLog (published, full test set) | | 0.95 | 0.96 | 0.96 | | | | |\n| 3-gram (published, full test set) | | | | 0.877 | | | | |\n")
	t.Log(b.String())
}

// TestADFABench trains on Training_Data_Master, scores every validation (normal) and attack
// trace, session score = mean action score including the end (for cover, which judges whole
// sessions: its end's score), and prints ROC AUC overall and per family and the detection rate
// at 5% FPR. Reduced mode: the n-grams and cover in full and an LSTM trained for one epoch on a
// fifth of the training traces.
func TestADFABench(t *testing.T) {
	dir := dataDir(t)
	d, err := ReadADFA(filepath.Join(dir, "adfa-ld", "ADFA-LD.zip"))
	if err != nil {
		t.Fatal(err)
	}
	nAttack := 0
	for _, s := range d.Attack {
		nAttack += len(s)
	}
	if len(d.Train) != 833 || len(d.Validation) != 4372 || nAttack != 746 || len(d.Attack) != 6 {
		t.Fatalf("read %d/%d/%d traces in %d families, the data README says 833/4,372/746 in 6", len(d.Train), len(d.Validation), nAttack, len(d.Attack))
	}
	type row struct {
		spec     modelSpec
		train    [][]detector.Action
		floorAUC float64
		agg      Aggregate // nil: Mean
	}
	rows := []row{
		{ngramSpec(3), d.Train, 0.75, nil},
		{ngramSpec(5), d.Train, 0.75, nil},
		{coverSpec(), d.Train, 0.83, Last},
	}
	if full {
		rows = append(rows,
			row{lstmSpec(32, 1, 10), d.Train, 0.75, nil},
			row{lstmBatchSpec(32, 1, 30, 8), d.Train, 0.8, nil},
			row{lstmSpec(64, 2, 10), d.Train, 0.75, nil})
	} else {
		small := modelSpec{"lstm H=16 L=1, 1 epoch, 1/5 of training", func() (detector.SequenceModel, error) {
			c := sequence.DefaultLSTMConfig()
			c.Hidden, c.Epochs = 16, 1
			return sequence.NewLSTM(c)
		}}
		var sub [][]detector.Action
		for i, s := range d.Train {
			if i%5 == 0 {
				sub = append(sub, s)
			}
		}
		rows = append(rows, row{small, sub, 0.6, nil})
	}
	fams := make([]string, 0, len(d.Attack))
	for f := range d.Attack {
		fams = append(fams, f)
	}
	sort.Strings(fams)
	var b strings.Builder
	fmt.Fprintf(&b, "\nADFA-LD (train %d traces; score %d validation, %d attack), session score = mean action score with the end (cover: its end)\n", len(d.Train), len(d.Validation), nAttack)
	b.WriteString("| model | AUC | detection at 5% FPR |")
	for _, f := range fams {
		b.WriteString(" AUC " + f + " |")
	}
	b.WriteString(" training | scoring (actions/s) |\n|---|---|---|" + strings.Repeat("---|", len(fams)) + "---|---|\n")
	for _, r := range rows {
		m, err := r.spec.make()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := m.Fit(r.train); err != nil {
			t.Fatal(err)
		}
		train := time.Since(start)
		agg := r.agg
		if agg == nil {
			agg = Mean
		}
		res, sc := ADFAScoreAll(m, d, agg, true)
		adfaSeqScores[r.spec.name] = sc
		fmt.Fprintf(&b, "| %s | %.3f | %.3f |", r.spec.name, res.AUC, res.DR5)
		for _, f := range fams {
			fmt.Fprintf(&b, " %.3f |", res.Family[f])
		}
		fmt.Fprintf(&b, " %s | %.0f |\n", train.Round(10*time.Millisecond), float64(res.Actions)/res.Score.Seconds())
		if res.AUC < r.floorAUC {
			t.Errorf("%s: AUC %.3f below the floor %.2f", r.spec.name, res.AUC, r.floorAUC)
		}
	}
	t.Log(b.String())
}
