package rules

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseThreshold(t *testing.T) {
	for _, c := range []struct {
		in   string
		v    float64
		kind Kind
		per  time.Duration
	}{
		{"80%", 80, Percent, 0},
		{" 12.5 % ", 12.5, Percent, 0},
		{"100", 100, Plain, 0},
		{"-3", -3, Plain, 0},
		{"0.5", 0.5, Plain, 0},
		{"64MiB", 64 << 20, Bytes, 0},
		{"10KB", 10e3, Bytes, 0},
		{"1gib", 1 << 30, Bytes, 0},
		{"512B", 512, Bytes, 0},
		{"500ms", 0.5, Duration, 0},
		{"2m", 120, Duration, 0},
		{"100/m", 100, Rate, time.Minute},
		{"5/s", 5, Rate, time.Second},
		{"64MiB/hour", 64 << 20, Rate, time.Hour},
		{"100 / min", 100, Rate, time.Minute},
	} {
		th, err := ParseThreshold(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if th.Value != c.v || th.Kind != c.kind || th.Per != c.per {
			t.Errorf("%q = %+v, want %v %v per %v", c.in, th, c.v, c.kind, c.per)
		}
	}
}

func TestParseThresholdRefused(t *testing.T) {
	for in, want := range map[string]string{
		"":          "empty",
		"eighty%":   `"eighty" is not a finite number`,
		"-5%":       "percentage cannot be negative",
		"-1MiB":     "size cannot be negative",
		"100/d":     `rate unit "d"`,
		"80%/m":     "not a percent",
		"-2/s":      "rate cannot be negative",
		"NaN":       "not a number",
		"12 apples": "not a number",
		"-5s":       "duration cannot be negative",
	} {
		_, err := ParseThreshold(in)
		if err == nil || !errors.Is(err, ErrThreshold) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "\""+in+"\"") {
			t.Errorf("%q: err = %v, want it to name the string and say %q", in, err, want)
		}
	}
}

func TestParseAction(t *testing.T) {
	for _, s := range []string{"alert", "throttle", "quarantine", "revoke"} {
		a, err := ParseAction(s)
		if err != nil || a.String() != s {
			t.Errorf("%s: %v %v", s, a, err)
		}
	}
	if _, err := ParseAction("ban"); err == nil || !strings.Contains(err.Error(), `"ban"`) {
		t.Errorf("ban: %v", err)
	}
}

func must(t *testing.T, s string) Threshold {
	t.Helper()
	th, err := ParseThreshold(s)
	if err != nil {
		t.Fatal(err)
	}
	return th
}

const sec = int64(time.Second)

func TestGaugeRuleFor(t *testing.T) {
	set, err := NewSet([]Rule{{Metric: "cpu_usage", Threshold: must(t, "80%"), For: 30 * time.Second, Action: Throttle}})
	if err != nil {
		t.Fatal(err)
	}
	st := set.NewState()
	obs := func(at int64, v float64) Result { return set.Observe(st, at*sec, "cpu_usage", v, nil)[0] }
	if r := obs(0, 90); r.Score != 0 {
		t.Fatal("violated before For elapsed")
	}
	if r := obs(20, 95); r.Score != 0 {
		t.Fatal("violated at 20 s of 30")
	}
	r := obs(30, 93.5)
	if r.Score != 1 || !r.Rising || r.Action != Throttle || !strings.Contains(r.Evidence, "cpu_usage 93.5 > 80% for 30s") {
		t.Fatalf("at 30 s: %+v", r)
	}
	if r := obs(31, 99); r.Score != 1 || r.Rising {
		t.Fatalf("still violated should not be rising: %+v", r)
	}
	if r := obs(32, 80); r.Score != 0 {
		t.Fatal("equal to the threshold is not a violation")
	}
	if r := obs(40, 99); r.Score != 0 {
		t.Fatal("the For clock did not restart after a dip")
	}
	if got := set.Observe(st, 50*sec, "memory", 1e9, nil); len(got) != 0 {
		t.Fatal("a rule answered for another metric")
	}
}

func TestRateRuleSlidingWindow(t *testing.T) {
	for _, r := range []Rule{
		{Metric: "messages_per_minute", Threshold: must(t, "100")},
		{Metric: "messages", Threshold: must(t, "100/m")},
	} {
		set, err := NewSet([]Rule{r})
		if err != nil {
			t.Fatal(err)
		}
		st := set.NewState()
		var last Result
		// 100 messages spread over the first 50 s: at the limit, not above.
		for i := range 100 {
			last = set.Observe(st, int64(i)*sec/2, "messages", 1, nil)[0]
			if last.Score != 0 {
				t.Fatalf("%s: violated at message %d", r.Metric, i+1)
			}
		}
		last = set.Observe(st, 51*sec, "messages", 1, nil)[0]
		if last.Score != 1 || !strings.Contains(last.Evidence, "101") {
			t.Fatalf("%s: the 101st message in a minute: %+v", r.Metric, last)
		}
		// Two minutes later the window has slid past all of them.
		if got := set.Observe(st, 171*sec, "messages", 1, nil)[0]; got.Score != 0 {
			t.Fatalf("%s: window did not slide", r.Metric)
		}
	}
}

func TestRuleRefused(t *testing.T) {
	for name, r := range map[string]Rule{
		"metric is empty":         {Threshold: must(t, "1")},
		"threshold is missing":    {Metric: "x"},
		"is negative":             {Metric: "x", Threshold: must(t, "1"), For: -1},
		"is per 1s but":           {Metric: "x_per_minute", Threshold: must(t, "5/s")},
		"not a percent":           {Metric: "x_per_minute", Threshold: must(t, "5%")},
		"no name before its rate": {Metric: "_per_minute", Threshold: must(t, "5")},
	} {
		if _, err := NewSet([]Rule{r}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestCapabilities(t *testing.T) {
	c := NewCapabilities([]string{"tool:search"}, Quarantine)
	if r := c.Check("tool:search"); r.Score != 0 {
		t.Fatal("held capability scored")
	}
	r := c.Check("tool:shell")
	if r.Score != 1 || r.Action != Quarantine || !strings.Contains(r.Evidence, `"tool:shell"`) {
		t.Fatalf("unheld: %+v", r)
	}
}

func TestStateCheckpoint(t *testing.T) {
	set, _ := NewSet([]Rule{
		{Metric: "cpu", Threshold: must(t, "50"), For: 10 * time.Second},
		{Metric: "refusals_per_minute", Threshold: must(t, "3")},
	})
	a := set.NewState()
	for i := range 30 {
		set.Observe(a, int64(i)*sec, "cpu", float64(40+i), nil)
		set.Observe(a, int64(i)*sec, "refusals", 0.1, nil)
	}
	data, _ := a.MarshalBinary()
	b := set.NewState()
	if err := b.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	for i := 30; i < 200; i++ {
		for _, m := range []string{"cpu", "refusals"} {
			ra := set.Observe(a, int64(i)*sec, m, float64(i%60), nil)
			rb := set.Observe(b, int64(i)*sec, m, float64(i%60), nil)
			if ra[0] != rb[0] {
				t.Fatalf("t=%d %s: restored %+v, original %+v", i, m, rb[0], ra[0])
			}
		}
	}
	other, _ := NewSet([]Rule{{Metric: "cpu", Threshold: must(t, "1")}})
	if err := other.NewState().UnmarshalBinary(data); err == nil || !strings.Contains(err.Error(), "policy has 1") {
		t.Fatalf("mismatched policy: %v", err)
	}
}

func TestThresholdModel(t *testing.T) {
	m, err := NewModel(ModelConfig{Threshold: "80%", For: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var got []float64
	for i, v := range []float64{10, 90, 90, 90, 10} {
		got = append(got, m.Observe(int64(i)*sec, v))
	}
	if want := []float64{0, 0, 0, 1, 0}; !equal(got, want) {
		t.Fatalf("scores %v, want %v", got, want)
	}
	m.Observe(10*sec, 95)
	data, _ := m.MarshalBinary()
	n, _ := NewModel(ModelConfig{Threshold: "80%", For: 2 * time.Second})
	if err := n.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if a, b := m.Observe(12*sec, 95), n.Observe(12*sec, 95); a != 1 || b != 1 {
		t.Fatalf("after restore: %v %v", a, b)
	}
	for field, cfg := range map[string]ModelConfig{
		"Threshold": {Threshold: "lots"},
		"is a rate": {Threshold: "5/m"},
		"For":       {Threshold: "5", For: -time.Second},
	} {
		if _, err := NewModel(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzStateCheckpoint(f *testing.F) {
	set, _ := NewSet([]Rule{{Metric: "m_per_second", Threshold: Threshold{Value: 1, Kind: Plain, Text: "1"}}})
	st := set.NewState()
	set.Observe(st, 5, "m", 1, nil)
	seed, _ := st.MarshalBinary()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		s := set.NewState()
		if err := s.UnmarshalBinary(data); err != nil {
			return
		}
		set.Observe(s, 1e9, "m", 1, nil)
		again, _ := s.MarshalBinary()
		_ = bytes.Clone(again)
	})
}

func FuzzParseThreshold(f *testing.F) {
	for _, s := range []string{"80%", "64MiB", "100/m", "500ms", "-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		th, err := ParseThreshold(s)
		if err == nil && th.Text == "" {
			t.Fatalf("%q parsed with no text", s)
		}
	})
}
