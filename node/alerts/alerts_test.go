package alerts

import (
	"errors"
	"testing"
	"time"
)

func TestAlertStoreLifecycleAndRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.MaxAlerts = 3
	st, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0).UTC()
	var ids []string
	for i := range 5 {
		a, err := st.Add(Alert{Agent: []string{"a", "b"}[i%2], Model: "hst", Score: 0.99, Time: t0.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != StatusOpen || a.ID == "" {
			t.Fatalf("added: %+v", a)
		}
		ids = append(ids, a.ID)
	}
	if st.Len() != 3 {
		t.Fatalf("Len = %d, want the bound 3", st.Len())
	}
	if _, err := st.Get(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("oldest alert beyond the bound: %v", err)
	}
	list, _ := st.List(Query{})
	if len(list) != 3 || list[0].ID != ids[4] || list[2].ID != ids[2] {
		t.Fatalf("List newest first: %+v", list)
	}
	if l, _ := st.List(Query{Agent: "a"}); len(l) != 2 {
		t.Fatalf("agent filter: %+v", l)
	}
	if l, _ := st.List(Query{Since: t0.Add(4 * time.Second)}); len(l) != 1 {
		t.Fatalf("since filter: %+v", l)
	}
	if l, _ := st.List(Query{Limit: 1}); len(l) != 1 || l[0].ID != ids[4] {
		t.Fatalf("limit: %+v", l)
	}
	now := t0.Add(time.Hour)
	a, err := st.Ack(ids[3], "op1", now)
	if err != nil || a.Status != StatusAcked || a.AckedBy != "op1" || !a.AckedAt.Equal(now) {
		t.Fatalf("ack: %+v %v", a, err)
	}
	if _, err := st.Ack(ids[3], "op2", now); !errors.Is(err, ErrTransition) {
		t.Fatalf("second ack: %v", err)
	}
	a, err = st.Resolve(ids[3], "op2", true, now)
	if err != nil || a.Status != StatusResolved || !a.FalsePositive || a.ResolvedBy != "op2" || a.AckedBy != "op1" {
		t.Fatalf("resolve: %+v %v", a, err)
	}
	if _, err := st.Resolve(ids[3], "op3", false, now); !errors.Is(err, ErrTransition) {
		t.Fatalf("second resolve: %v", err)
	}
	if _, err := st.Ack("zz", "op", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bad id: %v", err)
	}
	if err := st.PutCheckpoint("agent/a", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if l, _ := st.List(Query{Status: StatusResolved}); len(l) != 1 || l[0].ID != ids[3] || !l[0].FalsePositive {
		t.Fatalf("after restart: %+v", l)
	}
	b, err := st.Add(Alert{Agent: "c", Time: now})
	if err != nil || b.ID <= ids[4] {
		t.Fatalf("ID after restart %q must follow %q: %v", b.ID, ids[4], err)
	}
	if st.Len() != 3 {
		t.Fatalf("Len after restart = %d", st.Len())
	}
	var got []byte
	if err := st.Checkpoints(func(name string, d []byte) error {
		if name == "agent/a" {
			got = d
		}
		return nil
	}); err != nil || len(got) != 3 {
		t.Fatalf("checkpoint after restart: %v %v", got, err)
	}
}

func TestAlertStoreConfigRefused(t *testing.T) {
	if _, err := Open(t.TempDir(), Config{MaxAlerts: 0, MaxCheckpointBytes: 1}); err == nil {
		t.Fatal("MaxAlerts 0 accepted")
	}
	if _, err := ParseStatus("closed"); err == nil {
		t.Fatal("status closed accepted")
	}
}
