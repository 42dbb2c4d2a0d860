package benchmark

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Result summarises one load run. Latencies are exact order statistics of the recorded samples
// (nearest-rank), never estimates from a histogram.
type Result struct {
	Ops       int           // operations that succeeded
	Errors    int           // operations that returned an error (not in the latency samples)
	Elapsed   time.Duration // wall time of the whole run
	P50       time.Duration // median latency of the successful operations
	P99       time.Duration
	Max       time.Duration
	OpsPerSec float64 // Ops / Elapsed in seconds
}

// String is the one-line summary printed by the benchmarks.
func (r Result) String() string {
	return fmt.Sprintf("ops=%d errors=%d elapsed=%v p50=%v p99=%v max=%v ops/s=%.0f",
		r.Ops, r.Errors, r.Elapsed.Round(time.Millisecond), r.P50.Round(time.Microsecond),
		r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond), r.OpsPerSec)
}

// Report records p50-ms, p99-ms, max-ms and ops/s on b, each unit prefixed by prefix.
func (r Result) Report(b *testing.B, prefix string) {
	b.ReportMetric(ms(r.P50), prefix+"p50-ms")
	b.ReportMetric(ms(r.P99), prefix+"p99-ms")
	b.ReportMetric(ms(r.Max), prefix+"max-ms")
	b.ReportMetric(r.OpsPerSec, prefix+"ops/s")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of samples sorted ascending:
// the smallest sample such that at least p% of the samples are <= it. It returns 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon absorbs float error in p*n/100 (e.g. 99.9*1000) so an exact rank is not rounded up.
	rank := int(math.Ceil(p*float64(len(sorted))/100 - 1e-9))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// Summarize builds a Result from latency samples of successful operations (sorted in place), the
// number of failed operations and the wall time of the run. It is pure.
func Summarize(samples []time.Duration, errs int, elapsed time.Duration) Result {
	slices.Sort(samples)
	r := Result{Ops: len(samples), Errors: errs, Elapsed: elapsed}
	if len(samples) > 0 {
		r.P50 = Percentile(samples, 50)
		r.P99 = Percentile(samples, 99)
		r.Max = samples[len(samples)-1]
	}
	if elapsed > 0 {
		r.OpsPerSec = float64(len(samples)) / elapsed.Seconds()
	}
	return r
}

// Latency runs op n times in sequence, i = 0..n-1, from one writer, timing each call. A failed op is
// counted in Result.Errors. It returns an error when n < 1, when ctx ends before all ops ran, or
// when no op succeeded; the Result is filled in every case.
func Latency(ctx context.Context, n int, op func(ctx context.Context, i int) error) (Result, error) {
	return Throughput(ctx, 1, n, func(ctx context.Context, _, i int) error { return op(ctx, i) })
}

// Throughput runs total ops spread over writers concurrent goroutines. Each op index i in
// 0..total-1 runs exactly once (writers take the next index from a shared counter, so a slow writer
// does not hold back the others); writer is the goroutine's number in 0..writers-1. Elapsed is the
// wall time from the first op to the last completion. Errors are handled as in Latency.
func Throughput(ctx context.Context, writers, total int, op func(ctx context.Context, writer, i int) error) (Result, error) {
	if writers < 1 {
		return Result{}, fmt.Errorf("%w: writers = %d, want >= 1", ErrInvalid, writers)
	}
	if total < 1 {
		return Result{}, fmt.Errorf("%w: ops = %d, want >= 1", ErrInvalid, total)
	}
	writers = min(writers, total)
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		samples = make([][]time.Duration, writers) // one slice per writer: no lock on the hot path
		errs    = make([]int, writers)
	)
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			own := make([]time.Duration, 0, total/writers+1)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= total {
					break
				}
				t0 := time.Now()
				err := op(ctx, w, i)
				d := time.Since(t0)
				if err != nil {
					errs[w]++
					continue
				}
				own = append(own, d)
			}
			samples[w] = own
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	all := slices.Concat(samples...)
	var nerr int
	for _, e := range errs {
		nerr += e
	}
	r := Summarize(all, nerr, elapsed)
	switch {
	case ctx.Err() != nil && r.Ops+r.Errors < total:
		return r, fmt.Errorf("benchmark: run stopped after %d of %d ops: %w", r.Ops+r.Errors, total, ctx.Err())
	case r.Ops == 0:
		return r, fmt.Errorf("%w: all %d ops failed", ErrNoSamples, total)
	}
	return r, nil
}
