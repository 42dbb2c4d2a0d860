package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rule is one policy rule as a user writes it:
//
//	metric: cpu_usage, threshold: 80%, for: 30s, action: alert
//
// A rule is a gauge rule or a rate rule. A rate rule has a Rate threshold ("100/m") or a
// metric named with a rate suffix (messages_per_minute, refusals_per_second, bytes_per_hour);
// it sums the values observed under its base metric (the name without the suffix: messages,
// refusals, bytes) over a sliding window of that length. Every other rule is a gauge rule that
// compares each observed value of Metric. Either way the rule is violated when the value (or
// windowed sum) has stayed strictly above the threshold for at least For.
type Rule struct {
	// Name identifies the rule in evidence; default "<metric> > <threshold>".
	Name      string
	Metric    string
	Threshold Threshold
	// For is how long the condition must hold before the rule is violated; 0 = at once.
	For    time.Duration
	Action Action
}

var rateSuffixes = []struct {
	suffix string
	per    time.Duration
}{{"_per_second", time.Second}, {"_per_minute", time.Minute}, {"_per_hour", time.Hour}}

// window returns the base metric a rate rule counts and its window; ok is false for a gauge rule.
func (r Rule) window() (base string, per time.Duration, ok bool) {
	for _, s := range rateSuffixes {
		if b, cut := strings.CutSuffix(r.Metric, s.suffix); cut {
			return b, s.per, true
		}
	}
	if r.Threshold.Kind == Rate {
		return r.Metric, r.Threshold.Per, true
	}
	return "", 0, false
}

// Validate checks the rule.
func (r Rule) Validate() error {
	if r.Metric == "" {
		return fmt.Errorf("rules: rule %q: metric is empty", r.Name)
	}
	if r.Threshold.Text == "" {
		return fmt.Errorf("rules: rule for %s: threshold is missing", r.Metric)
	}
	if r.For < 0 {
		return fmt.Errorf("rules: rule for %s: for %v is negative", r.Metric, r.For)
	}
	if r.Action > Revoke {
		return fmt.Errorf("rules: rule for %s: action %v unknown", r.Metric, r.Action)
	}
	base, per, isRate := r.window()
	if isRate && r.Threshold.Kind == Rate && r.Threshold.Per != per {
		return fmt.Errorf("rules: rule for %s: threshold %s is per %v but the metric is per %v", r.Metric, r.Threshold.Text, r.Threshold.Per, per)
	}
	if isRate && base == "" {
		return fmt.Errorf("rules: rule for %s: metric has no name before its rate suffix", r.Metric)
	}
	if isRate && (r.Threshold.Kind == Percent || r.Threshold.Kind == Duration) {
		return fmt.Errorf("rules: rule for %s: a rate is compared with a count or a size, not a %s", r.Metric, r.Threshold.Kind)
	}
	return nil
}

func (r Rule) name() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Metric + " > " + r.Threshold.Text
}

// Result is the outcome of a rule for one observation.
type Result struct {
	Rule   string  // the rule's name
	Score  float64 // 1 when violated, 0 otherwise
	Rising bool    // violated now and not at the previous observation of its metric
	Action Action
	// Evidence says what was observed, e.g. "cpu_usage 93.5 > 80% for 45s".
	Evidence string
}

// Buckets is how many buckets a rate rule's sliding window is cut into: a rate is the sum over
// the last Buckets buckets of Per/Buckets each, so the window slides in steps of Per/12 (5 s
// for a per-minute rule). Memory per rate rule: Buckets×8 + 32 bytes.
const Buckets = 12

type compiled struct {
	Rule
	base   string // metric name observations are matched against
	rate   bool
	bucket time.Duration // Per/Buckets for rate rules
	label  string
}

// Set is an immutable list of rules shared by every agent under one policy; each agent's
// progress is in its own State.
//
//	set, _ := rules.NewSet([]rules.Rule{{Metric: "cpu_usage", Threshold: th, For: 30 * time.Second}})
//	st := set.NewState()
//	for _, r := range set.Observe(st, now, "cpu_usage", 93.5, nil) { … r.Score, r.Evidence … }
type Set struct {
	rules    []compiled
	byMetric map[string][]int
}

// NewSet validates and compiles rules.
func NewSet(rs []Rule) (*Set, error) {
	s := &Set{byMetric: make(map[string][]int)}
	for i, r := range rs {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		c := compiled{Rule: r, base: r.Metric, label: r.name()}
		if base, per, ok := r.window(); ok {
			c.base, c.rate, c.bucket = base, true, per/Buckets
		}
		s.byMetric[c.base] = append(s.byMetric[c.base], len(s.rules))
		s.rules = append(s.rules, c)
	}
	return s, nil
}

// Len is the number of rules.
func (s *Set) Len() int { return len(s.rules) }

// Metrics returns the metric names observations are matched against (base names for rates).
func (s *Set) Metrics() []string {
	out := make([]string, 0, len(s.byMetric))
	for m := range s.byMetric {
		out = append(out, m)
	}
	return out
}

type ruleState struct {
	since    int64 // when the condition started holding; valid if holding
	holding  bool
	violated bool
	head     int64 // index (t / bucket) of the newest bucket
	buckets  [Buckets]float64
}

// State is one agent's progress through a Set's rules.
type State struct{ rs []ruleState }

// NewState returns a fresh state for s.
func (s *Set) NewState() *State { return &State{rs: make([]ruleState, len(s.rules))} }

// windowSum adds v at t to a rate rule's buckets and returns the sum over the window.
func (st *ruleState) windowSum(bucket time.Duration, t int64, v float64) float64 {
	idx := t / int64(bucket)
	if idx > st.head {
		gap := idx - st.head // negative only if it overflowed: a head far in the past
		if gap >= Buckets || gap < 0 {
			st.buckets = [Buckets]float64{}
		} else {
			for i := st.head + 1; i <= idx; i++ {
				st.buckets[((i%Buckets)+Buckets)%Buckets] = 0 // i < 0 before 1970 or from a checkpoint
			}
		}
		st.head = idx
	}
	if idx > st.head-Buckets { // a late value older than the window is dropped
		st.buckets[((idx%Buckets)+Buckets)%Buckets] += v
	}
	sum := 0.0
	for _, b := range st.buckets {
		sum += b
	}
	return sum
}

// Observe feeds the value v of metric at t (Unix nanoseconds) to every rule on that metric and
// appends their results to out. For a rate rule v is the amount to count (1 per message, the
// byte count of a transfer). Times should be non-decreasing per agent; a late value is counted
// if still inside its window.
func (s *Set) Observe(st *State, t int64, metric string, v float64, out []Result) []Result {
	for _, i := range s.byMetric[metric] {
		c, rs := &s.rules[i], &st.rs[i]
		x := v
		if c.rate {
			x = rs.windowSum(c.bucket, t, v)
		}
		out = append(out, s.judge(c, rs, t, x))
	}
	return out
}

func (s *Set) judge(c *compiled, rs *ruleState, t int64, x float64) Result {
	res := Result{Rule: c.label, Action: c.Action}
	if !(x > c.Threshold.Value) {
		rs.holding, rs.violated = false, false
		return res
	}
	if !rs.holding {
		rs.holding, rs.since = true, t
	}
	held := time.Duration(t - rs.since)
	if held < c.For {
		rs.violated = false
		return res
	}
	res.Score, res.Rising = 1, !rs.violated
	rs.violated = true
	what := c.Metric
	if c.rate {
		what = fmt.Sprintf("%s (%s in the last %v)", c.Metric, c.base, c.bucket*Buckets)
	}
	res.Evidence = fmt.Sprintf("%s %s > %s", what, strconv.FormatFloat(x, 'g', 6, 64), c.Threshold.Text)
	if c.For > 0 {
		res.Evidence += fmt.Sprintf(" for %v", held.Round(time.Millisecond))
	}
	res.Evidence += " (rule " + c.label + ")"
	return res
}

// Capabilities is the set of capabilities an agent holds. Check scores an attempt to use one
// it does not hold 1.
type Capabilities struct {
	held   map[string]struct{}
	action Action
}

// NewCapabilities returns the set of held capabilities; a violation asks for action.
func NewCapabilities(held []string, action Action) *Capabilities {
	c := &Capabilities{held: make(map[string]struct{}, len(held)), action: action}
	for _, h := range held {
		c.held[h] = struct{}{}
	}
	return c
}

// Holds reports whether capability is held.
func (c *Capabilities) Holds(capability string) bool {
	_, ok := c.held[capability]
	return ok
}

// Check scores an attempt to use capability: 0 if held, 1 with evidence if not.
func (c *Capabilities) Check(capability string) Result {
	res := Result{Rule: "capability", Action: c.action}
	if c.Holds(capability) {
		return res
	}
	res.Score, res.Rising = 1, true
	res.Evidence = fmt.Sprintf("used capability %q it does not hold (rule capability)", capability)
	return res
}
