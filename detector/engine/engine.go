package engine

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"
	"time"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/multivar"
	"github.com/vigil-mesh/vigil/detector/rules"
)

// Kind is what a telemetry record reports.
type Kind uint8

const (
	Message Kind = iota + 1 // the agent sent a message (Peer, Bytes, Latency, Outcome)
	Refusal                 // the mesh refused something the agent tried
	Event                   // the agent used a capability / called a tool (Action)
	Metric                  // the agent reported a metric (Metric, Value)
)

func (k Kind) String() string {
	switch k {
	case Message:
		return "message"
	case Refusal:
		return "refusal"
	case Event:
		return "event"
	case Metric:
		return "metric"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Outcome is how an operation ended.
type Outcome uint8

const (
	OK Outcome = iota
	Error
)

// Record is one telemetry record about one agent.
type Record struct {
	Agent string
	Time  int64 // Unix nanoseconds; the engine's only clock
	Kind  Kind
	// Action is the capability used or tool called (Event); it feeds the capability check and
	// the sequence model.
	Action string
	// Authorized says the mesh already authorised this use of Action against the agent's
	// capabilities (an allowed send: the verb "ask" granted by "ask:planner"); the engine's own
	// capability check is then skipped. A use the mesh refused for want of a capability, or
	// an action the mesh never checked, leaves it false.
	Authorized bool
	// Session, when it changes, starts a new action session (else a gap of SessionGap does).
	Session string
	Peer    string
	Bytes   int64
	Latency time.Duration
	Outcome Outcome
	Metric  string  // Metric records: the metric's name (cpu_usage, …)
	Value   float64 // Metric records: its value
}

// Alert is raised when a score reaches its threshold.
type Alert struct {
	Agent string
	// Model names the source: "rule:<rule name>", "capability", "metric:<name>:<algorithm>",
	// the vector model's algorithm ("hst"), or "sequence:<algorithm>".
	Model    string
	Score    float64
	Evidence string
	Time     int64
	Action   rules.Action
}

// Features are the per-interval features of an agent, in vector order.
var Features = []string{"messages", "log_bytes", "distinct_peers", "refusals", "errors", "events", "log_mean_latency_ms", "distinct_actions"}

// Limits on untrusted record fields.
const (
	MaxAgentLen  = 256
	MaxMetricLen = 128
)

// Config configures an Engine. Every per-agent model is built from these factories the first
// time the agent needs it.
type Config struct {
	// Rules is the policy's rule set, shared by all agents; nil = no rules.
	Rules *rules.Set
	// CapabilityAction is what a capability violation asks for. Default rules.Alert.
	CapabilityAction rules.Action
	// Interval is the length of the feature interval fed to the vector model. Default 10 s.
	Interval time.Duration
	// Vector builds an agent's model over the len(Features) per-interval features; nil = none.
	// DefaultConfig uses multivar.HST.
	Vector func() (detector.VectorModel, error)
	// Metric builds the model for one of an agent's reported metrics; nil = none (rules still
	// see every metric).
	Metric func(name string) (detector.MetricModel, error)
	// MaxMetrics is how many distinct metric names get a model per agent; later names are
	// seen by rules only. Default 8.
	MaxMetrics int
	// Sequence is the sequence model shared by all agents (each agent has its own session);
	// nil = none. With a Baseline (the default) it is a fresh model: the engine collects the
	// baseline sessions, the caller fits a model on them (TakeBaseline, FitDone) and only then
	// does the sequence model score. With Baseline.Sessions 0 it is used as given (fitted
	// beforehand, or learning online from the first action).
	Sequence detector.SequenceModel
	// Baseline says how long the sequence model's baseline period lasts (see BaselineConfig).
	Baseline BaselineConfig
	// SessionGap ends an agent's session after this long without an Event, in record time
	// (checked when the agent's next Event arrives and by EndIdle). Default 5 min.
	SessionGap time.Duration
	// TuneInterval, when positive, fine-tunes the fitted sequence model on completed sessions
	// that raised no sequence alert, at most one session per TuneInterval of record time
	// (the model's Feedback on that session). 0 (default) = off: only sessions an operator marks
	// a false positive fine-tune the model. Refused for a model that learns online by itself
	// (an n-gram with Online).
	TuneInterval time.Duration
	// Vocabulary bounds the engine's action vocabulary, shared by all agents (a shared model
	// needs one meaning per action id). Default 4,096 actions of ≤ 128 bytes.
	Vocabulary detector.VocabularyConfig
	// AlertThreshold is the score at which a model alerts, in (0,1]. Rules and capability
	// checks alert when violated (score 1). Default 0.999: on ordinary synthetic traffic the
	// calibrated HST crosses 0.99 on about 0.6% of intervals and 0.999 on about 0.08%
	// (TestOrdinaryTrafficAlertRate).
	AlertThreshold float64
	// ModelAction is what a model alert asks for. Default rules.Alert.
	ModelAction rules.Action
	// FeedbackStep is how far a false-positive report moves that agent's threshold for that
	// model towards 1: t ← t + FeedbackStep·(1−t). Default 0.25 (0.999 → 0.99925). Range [0, 1).
	FeedbackStep float64
}

// DefaultConfig returns no rules, a 10 s interval, HST over the features (defaults, seed 1),
// no metric or sequence models, MaxMetrics 8, the default baseline, SessionGap 5 min, a shared
// vocabulary of 4,096 actions, AlertThreshold 0.999 and FeedbackStep 0.25.
func DefaultConfig() Config {
	voc := detector.DefaultVocabularyConfig()
	voc.MaxSize = 4096
	return Config{
		Interval: 10 * time.Second,
		Vector: func() (detector.VectorModel, error) {
			return multivar.NewHST(multivar.DefaultHSTConfig(len(Features)))
		},
		MaxMetrics:     8,
		Baseline:       DefaultBaselineConfig(),
		SessionGap:     5 * time.Minute,
		Vocabulary:     voc,
		AlertThreshold: 0.999,
		FeedbackStep:   0.25,
	}
}

// Validate checks the config, naming the field that is wrong.
func (c Config) Validate() error {
	switch {
	case c.Interval < time.Millisecond:
		return fmt.Errorf("engine: Interval %v is below 1ms", c.Interval)
	case c.MaxMetrics < 0 || c.MaxMetrics > 1024:
		return fmt.Errorf("engine: MaxMetrics %d out of range [0, 1024]", c.MaxMetrics)
	case c.SessionGap <= 0:
		return fmt.Errorf("engine: SessionGap %v must be positive", c.SessionGap)
	case c.TuneInterval < 0:
		return fmt.Errorf("engine: TuneInterval %v is negative", c.TuneInterval)
	case !(c.AlertThreshold > 0 && c.AlertThreshold <= 1):
		return fmt.Errorf("engine: AlertThreshold %v out of range (0, 1]", c.AlertThreshold)
	case !(c.FeedbackStep >= 0 && c.FeedbackStep < 1):
		return fmt.Errorf("engine: FeedbackStep %v out of range [0, 1)", c.FeedbackStep)
	case c.CapabilityAction > rules.Revoke || c.ModelAction > rules.Revoke:
		return errors.New("engine: CapabilityAction or ModelAction is not a known action")
	}
	if err := c.Vocabulary.Validate(); err != nil {
		return fmt.Errorf("engine: Vocabulary: %w", err)
	}
	if err := c.Baseline.Validate(); err != nil {
		return err
	}
	if c.TuneInterval > 0 && c.Sequence != nil {
		if _, ok := c.Sequence.(sessionLearner); !ok {
			return fmt.Errorf("engine: TuneInterval: sequence model %s cannot be fine-tuned on a session", c.Sequence.Algorithm())
		}
		if o, ok := c.Sequence.(onlineLearner); ok && o.LearnsOnline() {
			return fmt.Errorf("engine: TuneInterval: sequence model %s already learns online from every action", c.Sequence.Algorithm())
		}
	}
	return nil
}

// ErrRecord wraps every refusal of a malformed record.
var ErrRecord = errors.New("engine: bad record")

// Engine is the per-agent detector a node runs: every record goes through the policy rules,
// the capability check, the agent's sequence session and metric models, and into the agent's
// per-interval feature vector, which is scored by the vector model when the interval closes.
// It is a pure core: it reads no clock (time comes from the records), starts no goroutines and
// is not safe for concurrent use (the node serialises calls, or shards agents over engines).
type Engine struct {
	cfg    Config
	agents map[string]*agent
	res    []rules.Result // scratch

	vocab *detector.Vocabulary   // action ids, shared by all agents (the model is shared)
	seq   detector.SequenceModel // the model that scores (nil until fitted, or none)
	phase Phase
	base  baseline
	tuned int64 // record time of the last fine-tuning on a normal session (TuneInterval)
}

// New returns an engine with no agents. With a sequence model and a baseline it starts in
// the Baseline phase.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v, err := detector.NewVocabulary(cfg.Vocabulary)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, agents: make(map[string]*agent), vocab: v, tuned: neverTuned}
	switch {
	case cfg.Sequence == nil:
		e.phase = PhaseNone
	case cfg.Baseline.Sessions == 0:
		e.phase, e.seq = PhaseFitted, cfg.Sequence
	default:
		e.phase = PhaseBaseline
	}
	return e, nil
}

// source is one model's state for one agent.
type source struct {
	name  string // Alert.Model
	above bool   // the last score was at or above the threshold
}

type metricSlot struct {
	source
	metric string
	model  detector.MetricModel
}

// interval accumulates one feature interval.
type interval struct {
	index                                     int64 // Time / Interval
	open                                      bool
	messages, bytes, refusals, errors, events float64
	latencySum, latencyN                      float64
	peers, actions                            [4]uint64 // 256-bit linear-counting bitmaps
}

type agent struct {
	id    string
	rules *rules.State
	caps  *rules.Capabilities
	// The agent's action session (baseline.go): open, its id, its last Event's time, its model
	// session when it is scored, and its actions (all of them in the baseline; up to
	// maxKeptActions after, for feedback and fine-tuning).
	inSession  bool
	sessionID  string
	lastEvent  int64
	session    detector.Session // nil when the open session is not scored
	cur        []detector.Action
	curStart   int64
	curCut     bool // cur holds only the first maxKeptActions actions
	curAlerted bool // the open session raised a sequence alert
	collect    bool // the open session belongs to the baseline
	flagged    []keptSession
	seq        source
	metrics    []metricSlot
	vec        detector.VectorModel
	vecSrc     source
	acc        interval
	thresholds map[string]float64 // raised by Feedback; absent = Config.AlertThreshold
	features   [8]float64
}

// Agents is the number of agents with state.
func (e *Engine) Agents() int { return len(e.agents) }

// Forget drops an agent's state (e.g. after revocation), including what its open session
// added to the baseline.
func (e *Engine) Forget(agentID string) {
	if a, ok := e.agents[agentID]; ok {
		e.dropOpen(a)
		delete(e.agents, agentID)
	}
}

func (e *Engine) agent(id string) (*agent, error) {
	if a, ok := e.agents[id]; ok {
		return a, nil
	}
	a := &agent{id: id}
	if e.cfg.Rules != nil {
		a.rules = e.cfg.Rules.NewState()
	}
	if e.cfg.Vector != nil {
		m, err := e.cfg.Vector()
		if err != nil {
			return nil, fmt.Errorf("engine: building the vector model: %w", err)
		}
		if m.Dim() != len(Features) {
			return nil, fmt.Errorf("engine: vector model has Dim %d, the engine has %d features", m.Dim(), len(Features))
		}
		a.vec, a.vecSrc.name = m, m.Algorithm()
	}
	if e.cfg.Sequence != nil {
		a.seq.name = "sequence:" + e.cfg.Sequence.Algorithm()
	}
	e.agents[id] = a
	return a, nil
}

// SetCapabilities records the capabilities agentID holds; from now on an Event whose Action
// is not among them scores 1 and alerts. Until it is called no capability check is made.
func (e *Engine) SetCapabilities(agentID string, held []string) error {
	a, err := e.agent(agentID)
	if err != nil {
		return err
	}
	a.caps = rules.NewCapabilities(held, e.cfg.CapabilityAction)
	return nil
}

func (e *Engine) threshold(a *agent, model string) float64 {
	if t, ok := a.thresholds[model]; ok {
		return t
	}
	return e.cfg.AlertThreshold
}

// judge turns a model score into an alert on its rising edge.
func (e *Engine) judge(a *agent, s *source, t int64, score float64, evidence func() string, out []Alert) []Alert {
	th := e.threshold(a, s.name)
	if score < th {
		s.above = false
		return out
	}
	if s.above {
		return out
	}
	s.above = true
	return append(out, Alert{Agent: a.id, Model: s.name, Score: score, Time: t, Action: e.cfg.ModelAction,
		Evidence: fmt.Sprintf("%s scored %.4f ≥ threshold %.4f: %s", s.name, score, th, evidence())})
}

func validRecord(r Record) error {
	switch {
	case r.Agent == "":
		return fmt.Errorf("%w: agent is empty", ErrRecord)
	case len(r.Agent) > MaxAgentLen:
		return fmt.Errorf("%w: agent is %d bytes, more than %d", ErrRecord, len(r.Agent), MaxAgentLen)
	case r.Kind < Message || r.Kind > Metric:
		return fmt.Errorf("%w: kind %d unknown", ErrRecord, r.Kind)
	case r.Kind == Metric && (r.Metric == "" || len(r.Metric) > MaxMetricLen):
		return fmt.Errorf("%w: metric name %q empty or longer than %d", ErrRecord, r.Metric, MaxMetricLen)
	case r.Kind == Metric && (math.IsNaN(r.Value) || math.IsInf(r.Value, 0)):
		return fmt.Errorf("%w: metric %s value %v is not finite", ErrRecord, r.Metric, r.Value)
	case r.Bytes < 0 || r.Latency < 0:
		return fmt.Errorf("%w: negative bytes or latency", ErrRecord)
	}
	return nil
}

// Observe takes one record and appends the alerts it raises to out. A malformed record is
// refused with an error wrapping ErrRecord and changes nothing.
func (e *Engine) Observe(r Record, out []Alert) ([]Alert, error) {
	if err := validRecord(r); err != nil {
		return out, err
	}
	a, err := e.agent(r.Agent)
	if err != nil {
		return out, err
	}
	// Close the feature interval(s) this record's time has moved past.
	idx := r.Time / int64(e.cfg.Interval)
	if a.acc.open && idx > a.acc.index {
		out = e.closeInterval(a, out)
		if idx > a.acc.index+1 && a.vec != nil { // a quiet stretch: one all-zero interval stands for it
			a.acc = interval{index: a.acc.index + 1, open: true}
			out = e.closeInterval(a, out)
		}
	}
	if !a.acc.open || idx > a.acc.index {
		a.acc = interval{index: idx, open: true}
	}
	// Out-of-order records (idx < a.acc.index) count in the current interval.
	switch r.Kind {
	case Message:
		a.acc.messages++
		a.acc.bytes += float64(r.Bytes)
		if r.Peer != "" {
			setBit(&a.acc.peers, r.Peer)
		}
		if r.Latency > 0 {
			a.acc.latencySum += float64(r.Latency) / float64(time.Millisecond)
			a.acc.latencyN++
		}
		out = e.rule(a, r.Time, "messages", 1, out)
		out = e.rule(a, r.Time, "bytes", float64(r.Bytes), out)
		if r.Latency > 0 {
			out = e.rule(a, r.Time, "latency", r.Latency.Seconds(), out)
		}
	case Refusal:
		a.acc.refusals++
		out = e.rule(a, r.Time, "refusals", 1, out)
	case Event:
		a.acc.events++
		out = e.rule(a, r.Time, "events", 1, out)
		if r.Action != "" {
			setBit(&a.acc.actions, r.Action)
			out = e.event(a, r, out)
		}
	case Metric:
		out = e.rule(a, r.Time, r.Metric, r.Value, out)
		out, err = e.metric(a, r, out)
		if err != nil {
			return out, err
		}
	}
	if r.Outcome == Error {
		a.acc.errors++
		out = e.rule(a, r.Time, "errors", 1, out)
	}
	return out, nil
}

func (e *Engine) rule(a *agent, t int64, metric string, v float64, out []Alert) []Alert {
	if a.rules == nil {
		return out
	}
	e.res = e.cfg.Rules.Observe(a.rules, t, metric, v, e.res[:0])
	for _, res := range e.res {
		if res.Rising {
			out = append(out, Alert{Agent: a.id, Model: "rule:" + res.Rule, Score: res.Score,
				Evidence: res.Evidence, Time: t, Action: res.Action})
		}
	}
	return out
}

func (e *Engine) event(a *agent, r Record, out []Alert) []Alert {
	if a.caps != nil && !r.Authorized {
		if res := a.caps.Check(r.Action); res.Score > 0 {
			out = append(out, Alert{Agent: a.id, Model: "capability", Score: 1, Evidence: res.Evidence,
				Time: r.Time, Action: res.Action})
		}
	}
	if e.cfg.Sequence == nil {
		return out
	}
	return e.sequence(a, r, out)
}

func (e *Engine) metric(a *agent, r Record, out []Alert) ([]Alert, error) {
	if e.cfg.Metric == nil {
		return out, nil
	}
	var slot *metricSlot
	for i := range a.metrics {
		if a.metrics[i].metric == r.Metric {
			slot = &a.metrics[i]
			break
		}
	}
	if slot == nil {
		if len(a.metrics) >= e.cfg.MaxMetrics {
			return out, nil
		}
		m, err := e.cfg.Metric(r.Metric)
		if err != nil {
			return out, fmt.Errorf("engine: building the model for metric %s: %w", r.Metric, err)
		}
		if m == nil {
			return out, nil
		}
		a.metrics = append(a.metrics, metricSlot{source: source{name: "metric:" + r.Metric + ":" + m.Algorithm()}, metric: r.Metric, model: m})
		slot = &a.metrics[len(a.metrics)-1]
	}
	s := slot.model.Observe(r.Time, r.Value)
	return e.judge(a, &slot.source, r.Time, s, func() string {
		return fmt.Sprintf("%s = %g", r.Metric, r.Value)
	}, out), nil
}

// closeInterval scores the accumulated interval with the vector model; its alerts carry the
// interval's end as their time.
func (e *Engine) closeInterval(a *agent, out []Alert) []Alert {
	acc := &a.acc
	acc.open = false
	if a.vec == nil {
		return out
	}
	f := &a.features
	f[0] = acc.messages
	f[1] = math.Log1p(acc.bytes)
	f[2] = linearCount(&acc.peers)
	f[3] = acc.refusals
	f[4] = acc.errors
	f[5] = acc.events
	f[6] = 0
	if acc.latencyN > 0 {
		f[6] = math.Log1p(acc.latencySum / acc.latencyN)
	}
	f[7] = linearCount(&acc.actions)
	end := (acc.index + 1) * int64(e.cfg.Interval)
	s := a.vec.Observe(end, f[:])
	return e.judge(a, &a.vecSrc, end, s, func() string {
		return fmt.Sprintf("interval ending %s: messages=%g bytes=%.0f peers≈%.0f refusals=%g errors=%g events=%g actions≈%.0f",
			time.Unix(0, end).UTC().Format(time.RFC3339), f[0], acc.bytes, f[2], f[3], f[4], f[5], f[7])
	}, out)
}

func setBit(bm *[4]uint64, s string) {
	h := fnv.New64a()
	h.Write([]byte(s))
	b := h.Sum64() & 255
	bm[b>>6] |= 1 << (b & 63)
}

// linearCount estimates the distinct strings set in a 256-bit bitmap (Whang et al. 1990):
// n ≈ −m·ln(V/m) with V empty bits of m; within a few percent up to ~200 distinct, saturating
// near 1,400.
func linearCount(bm *[4]uint64) float64 {
	set := 0
	for _, w := range bm {
		set += bits.OnesCount64(w)
	}
	empty := 256 - set
	if empty == 0 {
		empty = 1
	}
	return max(0, -256*math.Log(float64(empty)/256))
}

// Feedback reports that alert was a false positive for agentID. For a model alert it raises
// that agent's threshold for that model by FeedbackStep of the way to 1 and, if the model
// implements detector.FeedbackModel, tells the model (which folds the alert's input into
// normal). Alerts from rules and capability checks are the policy and are not changed by
// feedback: it returns an error saying so.
func (e *Engine) Feedback(agentID string, alert Alert) error {
	a, ok := e.agents[agentID]
	if !ok {
		return fmt.Errorf("engine: feedback for unknown agent %q", agentID)
	}
	var model detector.Model
	switch {
	case a.vec != nil && alert.Model == a.vecSrc.name:
		model = a.vec
	case e.cfg.Sequence != nil && alert.Model == a.seq.name:
		// The operator's verdict fine-tunes the shared model on the session the alert came
		// from, when the engine still holds it (baseline.go).
		if err := e.sequenceFeedback(a, alert.Time); err != nil {
			return err
		}
	default:
		found := false
		for i := range a.metrics {
			if a.metrics[i].name == alert.Model {
				model, found = a.metrics[i].model, true
			}
		}
		if !found {
			return fmt.Errorf("engine: feedback for %q: not a model of agent %q (rule and capability alerts follow the policy)", alert.Model, agentID)
		}
	}
	if f, ok := model.(detector.FeedbackModel); ok {
		f.Feedback(alert.Time)
	}
	if a.thresholds == nil {
		a.thresholds = make(map[string]float64, 1)
	}
	t := e.threshold(a, alert.Model)
	a.thresholds[alert.Model] = t + e.cfg.FeedbackStep*(1-t)
	return nil
}

// Threshold returns agentID's current alert threshold for model (Config.AlertThreshold unless
// raised by Feedback).
func (e *Engine) Threshold(agentID, model string) float64 {
	if a, ok := e.agents[agentID]; ok {
		return e.threshold(a, model)
	}
	return e.cfg.AlertThreshold
}
