package gossip

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// TestReplayCacheModel checks the replay cache against a naive map of key → expiry while it is
// under capacity, and its bound once it is over.
func TestReplayCacheModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := newReplayCache(64)
	model := map[dedupeKey]time.Time{}
	now := time.Unix(1000, 0)
	for i := range 20000 {
		now = now.Add(time.Duration(rng.IntN(100)) * time.Millisecond)
		var k dedupeKey
		k[0] = byte(rng.IntN(40)) // few keys, so repeats happen
		if rng.IntN(2) == 0 {
			exp := now.Add(time.Duration(1+rng.IntN(5000)) * time.Millisecond)
			if !c.seen(k, now) {
				c.add(k, exp, now)
				model[k] = exp
			}
		}
		want := false
		if exp, ok := model[k]; ok && !exp.Before(now) {
			want = true
		}
		if got := c.seen(k, now); got != want {
			t.Fatalf("step %d: seen(%x) = %v, model says %v", i, k[0], got, want)
		}
		if c.len() > 64 {
			t.Fatalf("step %d: %d entries over capacity 64", i, c.len())
		}
	}
	// Over capacity: the entry expiring first goes, the newest stays.
	small := newReplayCache(2)
	a, b, d := dedupeKey{1}, dedupeKey{2}, dedupeKey{3}
	small.add(a, now.Add(time.Second), now)
	small.add(b, now.Add(time.Hour), now)
	small.add(d, now.Add(time.Minute), now)
	if small.seen(a, now) || !small.seen(b, now) || !small.seen(d, now) || small.len() != 2 {
		t.Fatal("eviction did not drop the entry expiring first")
	}
}

func TestBucket(t *testing.T) {
	var b bucket
	now := time.Unix(0, 0)
	n := 0
	for range 100 {
		if b.allow(now, 10, 5) {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("burst: %d allowed, want 5", n)
	}
	now = now.Add(time.Second) // 10 tokens, capped at the burst of 5
	n = 0
	for range 100 {
		if b.allow(now, 10, 5) {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("after 1s: %d allowed, want 5", n)
	}
	now = now.Add(200 * time.Millisecond)
	if !b.allow(now, 10, 5) || !b.allow(now, 10, 5) || b.allow(now, 10, 5) {
		t.Fatal("after 200ms at 10/s: want exactly 2")
	}
}

// TestCloseLeavesNoGoroutine: after Close (and memberlist's in-flight probes time out), the
// goroutine count is back where it was.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	c := newTestCluster(t, 40, 3, nil)
	if err := c.nodes[0].mesh.PublishRevocation(c.revocation("agent-a")); err != nil {
		t.Fatal(err)
	}
	c.waitRevs(1, 5*time.Second, 0)
	for _, nd := range c.nodes {
		if err := nd.mesh.Close(); err != nil {
			t.Fatal(err)
		}
		if err := nd.mesh.Close(); err != nil { // idempotent
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
