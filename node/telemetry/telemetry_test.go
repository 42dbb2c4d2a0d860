package telemetry

import (
	"fmt"
	"testing"
	"time"
)

func TestBufferBoundedNewestKept(t *testing.T) {
	b := New(4)
	t0 := time.Unix(1000, 0)
	for i := range 10 {
		b.Add(Record{Time: t0.Add(time.Duration(i) * time.Second), Agent: fmt.Sprintf("a%d", i%2), Bytes: i})
	}
	held, size, dropped, total := b.Stats()
	if held != 4 || size != 4 || dropped != 6 || total != 10 {
		t.Fatalf("stats = %d %d %d %d, want 4 4 6 10", held, size, dropped, total)
	}
	got := b.Query(Query{})
	if len(got) != 4 || got[0].Bytes != 6 || got[3].Bytes != 9 {
		t.Fatalf("query all = %+v", got)
	}
	got = b.Query(Query{Agent: "a1"})
	if len(got) != 2 || got[0].Bytes != 7 || got[1].Bytes != 9 {
		t.Fatalf("query a1 = %+v", got)
	}
	got = b.Query(Query{Limit: 1})
	if len(got) != 1 || got[0].Bytes != 9 {
		t.Fatalf("limit 1 = %+v", got)
	}
	got = b.Query(Query{Since: t0.Add(8 * time.Second)})
	if len(got) != 2 || got[0].Bytes != 8 {
		t.Fatalf("since = %+v", got)
	}
}

func TestSubscribe(t *testing.T) {
	b := New(2)
	var seen []int
	cancel := b.Subscribe(func(r Record) { seen = append(seen, r.Bytes) })
	b.Add(Record{Bytes: 1})
	b.Add(Record{Bytes: 2})
	cancel()
	cancel()
	b.Add(Record{Bytes: 3})
	if fmt.Sprint(seen) != "[1 2]" {
		t.Fatalf("seen %v", seen)
	}
}

// BenchmarkAdd is the cost a message pays for its telemetry record: one Add to a full buffer
// with one subscriber (a counter, as the node's metrics subscriber is).
//
//	go test -run '^$' -bench BenchmarkAdd ./node/telemetry/
func BenchmarkAdd(b *testing.B) {
	buf := New(DefaultSize)
	n := 0
	defer buf.Subscribe(func(Record) { n++ })()
	r := Record{Time: time.Now(), Agent: "planner-1", AgentID: "12D3KooW", Kind: KindSend, Action: "ask", Peer: "worker", Outcome: OutcomeOK}
	b.ReportAllocs()
	for b.Loop() {
		buf.Add(r)
	}
}
