package benchmark

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func ds(ns ...int) []time.Duration {
	out := make([]time.Duration, len(ns))
	for i, n := range ns {
		out[i] = time.Duration(n)
	}
	return out
}

func seq(n int) []time.Duration { // 1..n
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i + 1)
	}
	return out
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", ds(7), 50, 7},
		{"single p99", ds(7), 99, 7},
		{"two p50 is the lower", ds(1, 2), 50, 1},
		{"two p51 is the upper", ds(1, 2), 51, 2},
		{"1..100 p50", seq(100), 50, 50},
		{"1..100 p99", seq(100), 99, 99},
		{"1..100 p100", seq(100), 100, 100},
		{"1..100 p1", seq(100), 1, 1},
		{"1..10 p99 rounds up to max", seq(10), 99, 10},
		{"1..10 p90 exact rank", seq(10), 90, 9},
		{"1..1000 p99.9 exact rank despite float error", seq(1000), 99.9, 999},
		{"1..1000 p99", seq(1000), 99, 990},
		{"1..2000 p50", seq(2000), 50, 1000},
		{"1..2000 p99", seq(2000), 99, 1980},
		{"odd count p50 is the middle", seq(101), 50, 51},
		{"p0 clamps to min", seq(5), 0, 1},
		{"p above 100 clamps to max", seq(5), 150, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.samples, tc.p); got != tc.want {
				t.Errorf("Percentile(n=%d, %v) = %d, want %d", len(tc.samples), tc.p, got, tc.want)
			}
		})
	}
}

// TestPercentileMatchesNaive checks the rank formula against the definition: the smallest sample x
// such that at least p% of the samples are <= x.
func TestPercentileMatchesNaive(t *testing.T) {
	for n := 1; n <= 300; n++ {
		s := seq(n)
		for _, p := range []float64{1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100} {
			var want time.Duration
			for _, x := range s {
				if float64(int(x))*100 >= p*float64(n)-1e-6 { // count(<= x) = x for 1..n
					want = x
					break
				}
			}
			if got := Percentile(s, p); got != want {
				t.Fatalf("n=%d p=%v: got %d, want %d", n, p, got, want)
			}
		}
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		errs    int
		elapsed time.Duration
		want    Result
	}{
		{"unsorted input", ds(30, 10, 20, 40), 0, 2 * time.Second,
			Result{Ops: 4, Elapsed: 2 * time.Second, P50: 20, P99: 40, Max: 40, OpsPerSec: 2}},
		{"errors counted apart", ds(5), 3, time.Second,
			Result{Ops: 1, Errors: 3, Elapsed: time.Second, P50: 5, P99: 5, Max: 5, OpsPerSec: 1}},
		{"no samples", nil, 2, time.Second, Result{Errors: 2, Elapsed: time.Second}},
		{"zero elapsed gives no rate", ds(1), 0, 0, Result{Ops: 1, P50: 1, P99: 1, Max: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Summarize(tc.samples, tc.errs, tc.elapsed); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestThroughputRunsEveryIndexOnce(t *testing.T) {
	tests := []struct {
		name           string
		writers, total int
	}{
		{"one writer", 1, 50},
		{"many writers", 8, 1000},
		{"more writers than ops", 64, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			seen := make([]int, tc.total)
			writers := map[int]bool{}
			res, err := Throughput(t.Context(), tc.writers, tc.total, func(_ context.Context, w, i int) error {
				mu.Lock()
				defer mu.Unlock()
				seen[i]++
				writers[w] = true
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for i, n := range seen {
				if n != 1 {
					t.Fatalf("index %d ran %d times", i, n)
				}
			}
			for w := range writers {
				if w < 0 || w >= min(tc.writers, tc.total) {
					t.Fatalf("writer number %d out of range", w)
				}
			}
			if res.Ops != tc.total || res.Errors != 0 || res.Elapsed <= 0 || res.Max < res.P99 || res.P99 < res.P50 {
				t.Fatalf("inconsistent result %+v", res)
			}
		})
	}
}

func TestLatencyIsSequentialAndCountsErrors(t *testing.T) {
	var order []int
	boom := errors.New("boom")
	res, err := Latency(t.Context(), 10, func(_ context.Context, i int) error {
		order = append(order, i) // no lock: Latency must call op from one goroutine, in order
		if i%5 == 0 {
			return boom
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("order %v", order)
	}
	if res.Ops != 8 || res.Errors != 2 {
		t.Fatalf("ops=%d errors=%d, want 8 and 2", res.Ops, res.Errors)
	}
}

func TestHarnessErrors(t *testing.T) {
	ok := func(context.Context, int, int) error { return nil }
	fail := func(context.Context, int, int) error { return errors.New("down") }
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name           string
		ctx            context.Context
		writers, total int
		op             func(context.Context, int, int) error
		want           error
	}{
		{"zero writers", t.Context(), 0, 10, ok, ErrInvalid},
		{"zero ops", t.Context(), 1, 0, ok, ErrInvalid},
		{"all ops fail", t.Context(), 4, 10, fail, ErrNoSamples},
		{"context cancelled", cancelled, 2, 10, ok, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Throughput(tc.ctx, tc.writers, tc.total, tc.op); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestValue(t *testing.T) {
	a, b, c := Value(1), Value(1), Value(2)
	if len(a) != ValueSize() || !slices.Equal(a, b) || slices.Equal(a, c) {
		t.Fatalf("Value: len %d, deterministic %v, seed-dependent %v", len(a), slices.Equal(a, b), !slices.Equal(a, c))
	}
}
