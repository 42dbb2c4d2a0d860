// Command nabbench runs a Vigil metric model over the NAB corpus, writes the scores in NAB's
// results layout, optimises the threshold per profile with the Go port of NAB's scorer and prints
// the normalised scores beside NAB's published scoreboard.
//
//	go run ./detector/nab/cmd/nabbench -model cad            # data from ../shared/data/nab
//	go run ./detector/nab/cmd/nabbench -model ewma,gaussian -out /tmp/nab
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/vigil-mesh/vigil/detector/nab"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "nabbench:", err)
		os.Exit(1)
	}
}

func run() error {
	data := flag.String("data", "", "NAB folder (default: ../shared/data/nab from the repository root)")
	models := flag.String("model", "vigil", "comma-separated models: "+strings.Join(modelNames(), ", "))
	out := flag.String("out", "", "results folder (default: a new temporary folder)")
	mem := flag.Bool("mem", false, "also measure the heap bytes each model holds after its file (slower: a GC per file)")
	flag.Parse()
	if *data == "" {
		root, err := repoRoot()
		if err != nil {
			return err
		}
		*data = filepath.Join(root, "..", "shared", "data", "nab")
	}
	if *out == "" {
		d, err := os.MkdirTemp("", "nabbench-")
		if err != nil {
			return err
		}
		*out = d
	}
	c, err := nab.LoadCorpus(*data)
	if err != nil {
		return err
	}
	profiles := nab.Profiles()
	published, err := nab.LoadPublished(filepath.Join(*data, "results", "final_results.json"))
	if err != nil {
		return err
	}
	rows := 0
	for i := range c.Files {
		rows += len(c.Files[i].Values)
	}
	fmt.Printf("NAB corpus: %d files, %d rows, %d windows; results in %s\n\n", len(c.Files), rows, c.NumWindows(), *out)
	type line struct {
		name   string
		scores [3]float64
		ours   bool
	}
	var table []line
	for _, name := range strings.Split(*models, ",") {
		factory, ok := factories[name]
		if !ok {
			return fmt.Errorf("unknown model %q (known: %s)", name, strings.Join(modelNames(), ", "))
		}
		start := time.Now()
		scores, err := nab.Run(c, factory)
		if err != nil {
			return err
		}
		el := time.Since(start)
		nab.RoundLikeNAB(scores)
		if err := nab.WriteResults(*out, name, c, scores); err != nil {
			return err
		}
		l := line{name: "vigil " + name, ours: true}
		if name == "vigil" {
			l.name = "vigil"
		}
		for k, p := range profiles {
			r, err := nab.Evaluate(c, scores, p)
			if err != nil {
				return err
			}
			if err := nab.WriteScoreTable(*out, name, r); err != nil {
				return err
			}
			l.scores[k] = r.Normalized
			fmt.Printf("%-14s %-20s threshold %-10.6g raw %8.3f normalised %6.2f\n", name, p.Name, r.Threshold, r.Raw, r.Normalized)
		}
		fmt.Printf("%-14s detection: %d rows in %v (%.0f rows/s, one core)\n", name, rows, el.Round(time.Millisecond), float64(rows)/el.Seconds())
		if *mem {
			med, mx, at, err := memoryPerModel(c, factory)
			if err != nil {
				return err
			}
			fmt.Printf("%-14s memory after a file: median %d bytes, max %d bytes (%s)\n", name, med, mx, at)
		}
		fmt.Println()
		table = append(table, l)
	}
	for det, m := range published {
		table = append(table, line{name: det, scores: [3]float64{m["standard"], m["reward_low_FP_rate"], m["reward_low_FN_rate"]}})
	}
	sort.SliceStable(table, func(i, j int) bool { return table[i].scores[0] > table[j].scores[0] })
	fmt.Printf("%-26s %9s %9s %9s\n", "detector", "standard", "low FP", "low FN")
	for _, l := range table {
		mark := " "
		if l.ours {
			mark = "*"
		}
		fmt.Printf("%s %-24s %9.1f %9.1f %9.1f\n", mark, l.name, l.scores[0], l.scores[1], l.scores[2])
	}
	fmt.Println("\n* this run; others: NAB v1.1 results/final_results.json")
	return nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory; pass -data")
		}
		dir = parent
	}
}

// memoryPerModel runs each file through a fresh model and measures the heap the model holds at
// the end of the file (after a GC), returning the median and the largest.
func memoryPerModel(c *nab.Corpus, factory nab.ModelFactory) (median, largest uint64, at string, err error) {
	var sizes []uint64
	for i := range c.Files {
		f := &c.Files[i]
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m, err := factory(f)
		if err != nil {
			return 0, 0, "", err
		}
		for j, v := range f.Values {
			m.Observe(f.Times[j], v)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		var d uint64
		if after.HeapAlloc > before.HeapAlloc {
			d = after.HeapAlloc - before.HeapAlloc
		}
		runtime.KeepAlive(m)
		sizes = append(sizes, d)
		if d > largest {
			largest, at = d, fmt.Sprintf("%s, %d rows", f.Name, len(f.Values))
		}
	}
	sort.Slice(sizes, func(a, b int) bool { return sizes[a] < sizes[b] })
	return sizes[len(sizes)/2], largest, at, nil
}
