package engine

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/sequence"
)

// testLSTM is a small LSTM that learns the test's sessions in a few milliseconds: TopG 1 so an
// action out of its usual order is not a candidate.
func testLSTM(t testing.TB) detector.SequenceModel {
	t.Helper()
	c := sequence.DefaultLSTMConfig()
	c.Hidden, c.TopG, c.Epochs, c.BatchSize, c.FeedbackSteps = 16, 1, 60, 4, 20
	m, err := sequence.NewLSTM(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testNGram(t testing.TB) detector.SequenceModel {
	t.Helper()
	c := sequence.DefaultNGramConfig()
	c.TopG = 1
	m, err := sequence.NewNGram(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testCover(t testing.TB) detector.SequenceModel {
	t.Helper()
	m, err := sequence.NewCover(sequence.DefaultCoverConfig())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// normal is the only shape of session in the baseline, with one of three targets.
func normal(i int) []string {
	tgt := []string{"a", "b", "c"}[i%3]
	return []string{"login", "list:" + tgt, "read:" + tgt, "write:" + tgt, "logout"}
}

// baselineEngine runs model over a baseline of 20 sessions (at least 5).
func baselineEngine(t testing.TB, model detector.SequenceModel, mut func(*Config)) *Engine {
	t.Helper()
	return newEngine(t, func(c *Config) {
		c.Vector = nil
		c.Sequence = model
		c.Baseline = BaselineConfig{Sessions: 20, MinSessions: 5, Duration: time.Hour, MaxActions: 10_000}
		c.SessionGap = time.Minute
		c.AlertThreshold = 0.9
		if mut != nil {
			mut(c)
		}
	})
}

// session feeds one session of actions to agent, a second apart from at, and returns its
// alerts.
func session(t testing.TB, e *Engine, agent, id string, at int64, actions []string) []Alert {
	t.Helper()
	var out []Alert
	for i, act := range actions {
		out = append(out, observe(t, e, Record{Agent: agent, Time: at + int64(i)*sec, Kind: Event, Action: act, Session: id})...)
	}
	return out
}

func seqAlerts(as []Alert) []Alert {
	var out []Alert
	for _, a := range as {
		if strings.HasPrefix(a.Model, "sequence:") {
			out = append(out, a)
		}
	}
	return out
}

// fit takes the baseline, fits a fresh model on it and hands it back, as the node does.
func fit(t testing.TB, e *Engine, fresh detector.SequenceModel) [][]detector.Action {
	t.Helper()
	if !e.PendingFit() {
		t.Fatalf("no fit pending (phase %s)", e.phase)
	}
	ss := e.TakeBaseline()
	if e.PendingFit() || e.TakeBaseline() != nil {
		t.Fatal("the baseline was handed out twice")
	}
	if err := fresh.Fit(ss); err != nil {
		t.Fatal(err)
	}
	if err := e.FitDone(fresh); err != nil {
		t.Fatal(err)
	}
	return ss
}

// TestBaselinePhases: nothing is scored by the sequence model during the baseline (an unfitted
// LSTM would score every action 1), PendingFit turns on exactly once when the 20th session
// ends, and the fitted model then alerts on a foreign action and on a foreign order, not on a
// normal session. Both catalogue models.
func TestBaselinePhases(t *testing.T) {
	for name, build := range map[string]func(testing.TB) detector.SequenceModel{"lstm": testLSTM, "ngram": testNGram, "cover": testCover} {
		t.Run(name, func(t *testing.T) {
			e := baselineEngine(t, build(t), nil)
			if e.SequenceStatus().Phase != PhaseBaseline {
				t.Fatalf("phase %s", e.SequenceStatus().Phase)
			}
			pending := 0
			at := int64(0)
			for i := range 20 {
				agent := fmt.Sprintf("agent-%d", i%4)
				// Every record of the session, not only its end, is checked.
				for j, act := range normal(i) {
					r := Record{Agent: agent, Time: at + int64(j)*sec, Kind: Event, Action: act, Session: fmt.Sprint(i)}
					if got := seqAlerts(observe(t, e, r)); len(got) != 0 {
						t.Fatalf("sequence alert during the baseline: %+v", got)
					}
					if e.PendingFit() {
						pending++
					}
				}
				at += 10 * sec
			}
			// The 20th session is still open (it ends with the agent's next session or when idle).
			if pending != 0 || e.SequenceStatus().Sessions != 16 {
				t.Fatalf("pending %d, status %+v; want the 16 sessions ended so far", pending, e.SequenceStatus())
			}
			e.EndIdle(at + 2*int64(time.Minute))
			if st := e.SequenceStatus(); st.Phase != PhaseFitting || st.Sessions != 20 || st.Actions != 100 || !e.PendingFit() {
				t.Fatalf("after the 20th session: %+v pending %v", st, e.PendingFit())
			}
			// Records while the fit runs are observed (rules, other models) and score nothing.
			if got := seqAlerts(session(t, e, "agent-9", "during", at+3*int64(time.Minute), []string{"exec", "rm"})); len(got) != 0 {
				t.Fatalf("sequence alert while fitting: %+v", got)
			}
			ss := fit(t, e, build(t))
			if len(ss) != 20 || len(ss[0]) != 5 {
				t.Fatalf("baseline sessions: %d", len(ss))
			}
			if err := e.FitDone(build(t)); err == nil {
				t.Fatal("a second FitDone was accepted")
			}
			at += 10 * int64(time.Minute)
			if got := seqAlerts(session(t, e, "agent-1", "n", at, normal(7))); len(got) != 0 {
				t.Fatalf("a normal session alerted after the fit: %+v", got)
			}
			got := seqAlerts(session(t, e, "agent-1", "foreign-action", at+time.Minute.Nanoseconds(), []string{"login", "list:a", "exec:/bin/sh", "logout"}))
			if len(got) != 1 || got[0].Model != "sequence:"+name || !strings.Contains(got[0].Evidence, "exec:/bin/sh") {
				t.Fatalf("foreign action: %+v", got)
			}
			got = seqAlerts(session(t, e, "agent-2", "foreign-order", at+2*time.Minute.Nanoseconds(), []string{"login", "write:b", "list:b", "read:b", "logout"}))
			if len(got) == 0 || !strings.Contains(got[0].Evidence, "write:b") {
				t.Fatalf("foreign order: %+v", got)
			}
		})
	}
}

// TestBaselineOpenSessionAtFit: a session open when the model is fitted is not scored (its
// start was not seen by the model); the agent's next session is.
func TestBaselineOpenSessionAtFit(t *testing.T) {
	e := baselineEngine(t, testNGram(t), nil)
	for i := range 20 {
		session(t, e, "a", fmt.Sprint(i), int64(i)*10*sec, normal(i))
	}
	session(t, e, "b", "open", 300*sec, []string{"login"})
	e.End("a")
	fit(t, e, testNGram(t))
	if got := seqAlerts(session(t, e, "b", "open", 301*sec, []string{"exec"})); len(got) != 0 {
		t.Fatalf("a session open at the fit was scored: %+v", got)
	}
	if got := seqAlerts(session(t, e, "b", "next", 302*sec, []string{"exec"})); len(got) != 1 {
		t.Fatalf("the next session was not scored: %+v", got)
	}
}

// TestBaselineEnds: Duration ends the baseline once MinSessions are in; MaxActions ends it
// whatever the count, cutting open sessions; a forgotten agent's open session leaves it.
func TestBaselineEnds(t *testing.T) {
	t.Run("duration", func(t *testing.T) {
		e := baselineEngine(t, testNGram(t), nil)
		for i := range 4 {
			session(t, e, "a", fmt.Sprint(i), int64(i)*20*int64(time.Minute), normal(i))
		}
		e.EndIdle(2 * int64(time.Hour))
		if st := e.SequenceStatus(); st.Phase != PhaseBaseline || st.Sessions != 4 {
			t.Fatalf("an hour with 4 of the 5 sessions needed: %+v", st)
		}
		session(t, e, "a", "5", 3*int64(time.Hour), normal(5))
		e.EndIdle(4 * int64(time.Hour))
		if st := e.SequenceStatus(); st.Phase != PhaseFitting || st.Sessions != 5 {
			t.Fatalf("the fifth session after the hour: %+v", st)
		}
	})
	t.Run("max actions", func(t *testing.T) {
		e := baselineEngine(t, testNGram(t), func(c *Config) { c.Baseline.MaxActions = 12 })
		session(t, e, "a", "1", 0, normal(0)) // 5 actions, open
		session(t, e, "x", "1", 0, []string{"login", "list:a"})
		e.Forget("x") // its 2 actions leave the baseline
		session(t, e, "b", "1", 0, []string{"login", "list:b", "read:b", "write:b"})
		if st := e.SequenceStatus(); st.Phase != PhaseBaseline || st.Actions != 9 {
			t.Fatalf("before the cap: %+v", st)
		}
		session(t, e, "c", "1", 0, []string{"login", "list:c", "read:c"})
		st := e.SequenceStatus()
		if st.Phase != PhaseFitting || st.Sessions != 3 || st.Actions != 12 {
			t.Fatalf("at the cap: %+v", st)
		}
		ss := e.TakeBaseline()
		if want := [][]detector.Action{{1, 2, 3, 4, 5}, {1, 6, 7, 8}, {1, 9, 10}}; !reflect.DeepEqual(ss, want) {
			t.Fatalf("cut sessions %v, want %v", ss, want)
		}
	})
	t.Run("no baseline", func(t *testing.T) {
		e := baselineEngine(t, testNGram(t), func(c *Config) { c.Baseline.Sessions = 0 })
		if st := e.SequenceStatus(); st.Phase != PhaseFitted {
			t.Fatalf("%+v", st)
		}
		// An unfitted n-gram scores every first action 1.
		if got := seqAlerts(session(t, e, "a", "1", 0, []string{"login"})); len(got) != 1 {
			t.Fatalf("not scored from the first action: %+v", got)
		}
	})
	t.Run("fit failed", func(t *testing.T) {
		e := baselineEngine(t, testNGram(t), nil)
		for i := range 21 {
			session(t, e, "a", fmt.Sprint(i), int64(i)*10*sec, normal(i))
		}
		if err := e.FitFailed(); err == nil {
			t.Fatal("FitFailed before TakeBaseline was accepted")
		}
		e.TakeBaseline()
		if err := e.FitFailed(); err != nil {
			t.Fatal(err)
		}
		if st := e.SequenceStatus(); st.Phase != PhaseBaseline || st.Sessions != 0 || st.Actions != 0 {
			t.Fatalf("after a failed fit: %+v", st)
		}
	})
}

func TestBaselineConfigRefused(t *testing.T) {
	for field, mut := range map[string]func(*Config){
		"Baseline.Sessions":    func(c *Config) { c.Baseline.Sessions = -1 },
		"Baseline.MinSessions": func(c *Config) { c.Baseline.MinSessions = 0 },
		"Baseline.Duration":    func(c *Config) { c.Baseline.Duration = 0 },
		"Baseline.MaxActions":  func(c *Config) { c.Baseline.MaxActions = maxBaselineActions + 1 },
		"TuneInterval":         func(c *Config) { c.TuneInterval = -time.Second },
		"learns online": func(c *Config) {
			m, _ := sequence.NewNGram(sequence.NGramConfig{N: 3, TopG: 9, Alpha: 0.5, Online: true, MaxContexts: 16})
			c.Sequence, c.TuneInterval = m, time.Minute
		},
		"cannot be fine-tuned": func(c *Config) { c.Sequence, c.TuneInterval = &transitions{}, time.Minute },
	} {
		cfg := DefaultConfig()
		mut(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}

// TestBaselineCheckpointRestore: an engine restored mid-baseline, and one restored after the
// fit, behave exactly like the original: the same baseline, the same fitted model, the same
// scores and alerts.
func TestBaselineCheckpointRestore(t *testing.T) {
	run := func(e *Engine, from, to int) []Alert {
		var out []Alert
		for i := from; i < to; i++ {
			acts := normal(i)
			if i >= 30 && i%7 == 6 { // after the fit: out of order, and an action never seen
				acts = []string{"login", "read:" + []string{"a", "b", "c"}[i%3], "list:a", fmt.Sprint("drop:", i), "logout"}
			}
			out = append(out, session(t, e, fmt.Sprintf("agent-%d", i%3), fmt.Sprint(i), int64(i)*10*sec, acts)...)
		}
		return out
	}
	a := baselineEngine(t, testLSTM(t), nil)
	run(a, 0, 12)
	mid, err := a.CheckpointSequence()
	if err != nil {
		t.Fatal(err)
	}
	b := baselineEngine(t, testLSTM(t), nil)
	if err := b.RestoreSequence(mid); err != nil {
		t.Fatal(err)
	}
	if again, _ := b.CheckpointSequence(); !bytes.Equal(again, mid) {
		t.Fatal("the restored baseline checkpoints differently")
	}
	// Sessions open at the checkpoint are not in it: end them in the original too.
	for _, id := range []string{"agent-0", "agent-1", "agent-2"} {
		a.Forget(id)
	}
	run(a, 12, 30)
	run(b, 12, 30)
	sa, sb := fit(t, a, testLSTM(t)), fit(t, b, testLSTM(t))
	if !reflect.DeepEqual(sa, sb) {
		t.Fatalf("baselines differ:\n%v\n%v", sa, sb)
	}
	fitted, err := a.CheckpointSequence()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := b.CheckpointSequence(); !bytes.Equal(again, fitted) {
		t.Fatal("models fitted on the restored baseline differ")
	}
	c := baselineEngine(t, testLSTM(t), nil)
	if err := c.RestoreSequence(fitted); err != nil {
		t.Fatal(err)
	}
	if st := c.SequenceStatus(); st.Phase != PhaseFitted {
		t.Fatalf("restored after the fit: %+v", st)
	}
	// The same scores, action by action, from the original and the restored model.
	sa1, sc1 := a.seq.Start(), c.seq.Start()
	for _, id := range []detector.Action{1, 2, 3, 9, 4, 5, 0} {
		if x, y := sa1.Observe(id), sc1.Observe(id); x != y {
			t.Fatalf("action %d scores %v, restored %v", id, x, y)
		}
	}
	alertsA, alertsC := run(a, 30, 60), run(c, 30, 60)
	if len(seqAlerts(alertsA)) == 0 {
		t.Fatal("the unusual sessions raised no alert: the comparison means nothing")
	}
	if !reflect.DeepEqual(alertsA, alertsC) {
		t.Fatalf("restored engine diverged:\n%+v\n%+v", alertsA, alertsC)
	}
}

func TestRestoreSequenceRefused(t *testing.T) {
	a := baselineEngine(t, testNGram(t), nil)
	for i := range 8 {
		session(t, a, "a", fmt.Sprint(i), int64(i)*10*sec, normal(i))
	}
	mid, _ := a.CheckpointSequence()
	cases := map[string]struct {
		e    *Engine
		data []byte
		want string
	}{
		"other algorithm": {baselineEngine(t, testLSTM(t), nil), mid, "checkpoint of ngram, the engine runs lstm"},
		"no baseline":     {baselineEngine(t, testNGram(t), func(c *Config) { c.Baseline.Sessions = 0 }), mid, "the engine has no baseline"},
		"no model":        {newEngine(t, nil), mid, "no sequence model"},
		"truncated":       {baselineEngine(t, testNGram(t), nil), mid[:len(mid)-3], "sequence"},
		"trailing":        {baselineEngine(t, testNGram(t), nil), append(append([]byte{}, mid...), 1), "sequence"},
	}
	for name, c := range cases {
		session(t, c.e, "z", "1", 0, []string{"login", "list:z"})
		before, _ := c.e.CheckpointSequence()
		err := c.e.RestoreSequence(c.data)
		if !errors.Is(err, detector.ErrCheckpoint) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
		if after, _ := c.e.CheckpointSequence(); !bytes.Equal(before, after) {
			t.Errorf("%s: a refused restore changed the engine", name)
		}
	}
	// A checkpoint that already holds what a smaller baseline asks for completes it at once.
	small := baselineEngine(t, testNGram(t), func(c *Config) { c.Baseline.Sessions, c.Baseline.MinSessions = 6, 2 })
	if err := small.RestoreSequence(mid); err != nil {
		t.Fatal(err)
	}
	if !small.PendingFit() {
		t.Fatalf("restored 8 sessions under a 6-session baseline: %+v", small.SequenceStatus())
	}
}

func FuzzRestoreSequence(f *testing.F) {
	e := baselineEngine(f, testNGram(f), nil)
	for i := range 21 {
		session(f, e, "a", fmt.Sprint(i), int64(i)*10*sec, normal(i))
	}
	mid, _ := e.CheckpointSequence()
	f.Add(mid)
	fit(f, e, testNGram(f))
	fitted, _ := e.CheckpointSequence()
	f.Add(fitted)
	f.Fuzz(func(t *testing.T, data []byte) {
		d := baselineEngine(t, testNGram(t), nil)
		before, _ := d.CheckpointSequence()
		if err := d.RestoreSequence(data); err != nil {
			if after, _ := d.CheckpointSequence(); !bytes.Equal(before, after) {
				t.Fatal("failed restore changed the engine")
			}
			return
		}
		session(t, d, "a", "x", 0, normal(1))
		d.EndIdle(int64(time.Hour))
	})
}

// TestSequenceFeedbackFineTunes: a false positive on a sequence alert fine-tunes the shared
// model on the session the alert came from (the same session then scores lower), while that
// session is open and after it ended; with TuneInterval, completed normal sessions fine-tune
// it at most once per interval.
func TestSequenceFeedbackFineTunes(t *testing.T) {
	e := baselineEngine(t, testLSTM(t), nil)
	for i := range 21 {
		session(t, e, "a", fmt.Sprint(i), int64(i)*10*sec, normal(i))
	}
	fit(t, e, testLSTM(t))
	odd := []string{"login", "write:a", "list:a", "read:a", "logout"} // known actions, out of order
	score := func() float64 {                                         // the session's total score under the current model
		s, sum := e.seq.Start(), 0.0
		for _, act := range odd {
			sum += s.Observe(e.vocab.Add(act))
		}
		return sum
	}
	got := seqAlerts(session(t, e, "b", "odd", 1000*sec, odd))
	if len(got) != 1 {
		t.Fatalf("odd session: %+v", got)
	}
	e.EndIdle(2000 * sec) // the session has ended: its actions are kept for the feedback
	before, s0 := score(), mustCkpt(t, e)
	if err := e.Feedback("b", got[0]); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(s0, mustCkpt(t, e)) || !(score() < before) {
		t.Fatalf("feedback did not fine-tune the model: the session's total score %v → %v", before, score())
	}
	if th := e.Threshold("b", got[0].Model); !(th > 0.9) {
		t.Fatalf("threshold %v", th)
	}

	tuned := baselineEngine(t, testLSTM(t), func(c *Config) { c.TuneInterval = time.Hour })
	for i := range 21 {
		session(t, tuned, "a", fmt.Sprint(i), int64(i)*10*sec, normal(i))
	}
	fit(t, tuned, testLSTM(t))
	at := 1000 * sec
	step := func() []byte {
		session(t, tuned, "a", fmt.Sprint(at), at, normal(1))
		at += 2 * int64(time.Minute)
		tuned.EndIdle(at)
		return mustCkpt(t, tuned)
	}
	c0 := mustCkpt(t, tuned)
	c1 := step()
	c2 := step()
	if bytes.Equal(c0, c1) || !bytes.Equal(c1, c2) {
		t.Fatalf("fine-tuning on normal sessions: first changed %v, second within the hour changed %v", !bytes.Equal(c0, c1), !bytes.Equal(c1, c2))
	}
	at += int64(time.Hour)
	if bytes.Equal(c2, step()) {
		t.Fatal("no fine-tuning an hour later")
	}
}

func mustCkpt(t testing.TB, e *Engine) []byte {
	t.Helper()
	b, err := e.CheckpointSequence()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
