package engine

import (
	"fmt"
	"math"
	"sort"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/internal/wire"
)

// Checkpoint limits.
const (
	maxModelCheckpoint = 16 << 20
	maxThresholds      = 1100
)

// Checkpoint returns one agent's whole detector state: rule progress, vocabulary, metric and
// vector models, the open feature interval, alert edges and thresholds raised by feedback.
// Not included: the agent's capabilities (they come from the registry: call SetCapabilities
// after Restore) and an action session in progress (detector.Session has no checkpoint, so
// the first Event after a restore starts a new session).
func (e *Engine) Checkpoint(agentID string) ([]byte, error) {
	a, ok := e.agents[agentID]
	if !ok {
		return nil, fmt.Errorf("engine: checkpoint of unknown agent %q", agentID)
	}
	var w wire.Writer
	w.Header("VAGT", 1)
	w.Bool(a.rules != nil)
	if a.rules != nil {
		b, _ := a.rules.MarshalBinary()
		w.Blob(b)
	}
	vb, _ := a.vocab.MarshalBinary()
	w.Blob(vb)
	w.Bool(a.seq.above)
	w.U32(uint32(len(a.metrics)))
	for _, m := range a.metrics {
		b, err := m.model.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("engine: checkpoint of %s: %w", m.name, err)
		}
		w.String(m.metric)
		w.String(m.name)
		w.Bool(m.above)
		w.Blob(b)
	}
	w.Bool(a.vec != nil)
	if a.vec != nil {
		b, err := a.vec.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("engine: checkpoint of %s: %w", a.vecSrc.name, err)
		}
		w.String(a.vecSrc.name)
		w.Bool(a.vecSrc.above)
		w.Blob(b)
	}
	acc := a.acc
	w.I64(acc.index)
	w.Bool(acc.open)
	w.F64s([]float64{acc.messages, acc.bytes, acc.refusals, acc.errors, acc.events, acc.latencySum, acc.latencyN})
	for _, x := range append(acc.peers[:], acc.actions[:]...) {
		w.U64(x)
	}
	names := make([]string, 0, len(a.thresholds))
	for name := range a.thresholds {
		names = append(names, name)
	}
	sort.Strings(names) // the same state always gives the same bytes
	w.U32(uint32(len(names)))
	for _, name := range names {
		w.String(name)
		w.F64(a.thresholds[name])
	}
	return w.Bytes(), nil
}

// Restore replaces agentID's state with a checkpoint taken under the same configuration
// (same rules, same model factories). On error nothing changes.
func (e *Engine) Restore(agentID string, data []byte) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: agent %q: %s", detector.ErrCheckpoint, agentID, fmt.Sprintf(format, args...))
	}
	if agentID == "" || len(agentID) > MaxAgentLen {
		return fmt.Errorf("%w: agent name empty or over %d bytes", ErrRecord, MaxAgentLen)
	}
	old := e.agents[agentID]
	delete(e.agents, agentID)
	a, err := e.agent(agentID) // a fresh agent from the factories
	if old != nil {
		e.agents[agentID] = old
	} else {
		delete(e.agents, agentID)
	}
	if err != nil {
		return err
	}
	r := wire.NewReader(data)
	r.Header("VAGT", 1)
	hasRules := r.Bool()
	if r.Err() == nil && hasRules != (a.rules != nil) {
		return fail("checkpoint has rules=%v, the engine has rules=%v", hasRules, a.rules != nil)
	}
	if hasRules {
		if err := a.rules.UnmarshalBinary(r.Blob("rule state", maxModelCheckpoint)); r.Err() == nil && err != nil {
			return err
		}
	}
	if err := a.vocab.UnmarshalBinary(r.Blob("vocabulary", maxModelCheckpoint)); r.Err() == nil && err != nil {
		return err
	}
	a.seq.above = r.Bool()
	n := r.U32()
	if r.Err() == nil && int(n) > e.cfg.MaxMetrics {
		return fail("%d metric models, more than MaxMetrics %d", n, e.cfg.MaxMetrics)
	}
	for i := 0; i < int(n) && r.Err() == nil; i++ {
		metric := r.String("metric name", MaxMetricLen)
		name := r.String("model name", MaxMetricLen+64)
		above := r.Bool()
		blob := r.Blob("metric model", maxModelCheckpoint)
		if r.Err() != nil {
			break
		}
		if e.cfg.Metric == nil {
			return fail("checkpoint has a model for %s, the engine builds none", metric)
		}
		m, err := e.cfg.Metric(metric)
		if err != nil || m == nil {
			return fail("cannot build the model for %s: %v", metric, err)
		}
		if want := "metric:" + metric + ":" + m.Algorithm(); want != name {
			return fail("metric model %s, the engine builds %s", name, want)
		}
		if err := m.UnmarshalBinary(blob); err != nil {
			return fmt.Errorf("engine: agent %q: %s: %w", agentID, name, err)
		}
		a.metrics = append(a.metrics, metricSlot{source: source{name: name, above: above}, metric: metric, model: m})
	}
	hasVec := r.Bool()
	if r.Err() == nil && hasVec != (a.vec != nil) {
		return fail("checkpoint has a vector model=%v, the engine has %v", hasVec, a.vec != nil)
	}
	if hasVec {
		name := r.String("vector model name", 64)
		a.vecSrc.above = r.Bool()
		blob := r.Blob("vector model", maxModelCheckpoint)
		if r.Err() == nil && name != a.vecSrc.name {
			return fail("vector model %s, the engine builds %s", name, a.vecSrc.name)
		}
		if r.Err() == nil {
			if err := a.vec.UnmarshalBinary(blob); err != nil {
				return fmt.Errorf("engine: agent %q: %w", agentID, err)
			}
		}
	}
	a.acc.index = r.I64()
	a.acc.open = r.Bool()
	f := r.F64s("interval", 7)
	if r.Err() == nil && len(f) != 7 {
		return fail("interval has %d sums, want 7", len(f))
	}
	for _, x := range f {
		if math.IsNaN(x) || x < 0 {
			return fail("interval sum %v", x)
		}
	}
	if len(f) == 7 {
		a.acc.messages, a.acc.bytes, a.acc.refusals, a.acc.errors, a.acc.events, a.acc.latencySum, a.acc.latencyN = f[0], f[1], f[2], f[3], f[4], f[5], f[6]
	}
	for i := range a.acc.peers {
		a.acc.peers[i] = r.U64()
	}
	for i := range a.acc.actions {
		a.acc.actions[i] = r.U64()
	}
	nt := r.U32()
	if r.Err() == nil && nt > maxThresholds {
		return fail("%d thresholds, more than %d", nt, maxThresholds)
	}
	for i := 0; i < int(nt) && r.Err() == nil; i++ {
		name := r.String("threshold model", MaxMetricLen+64)
		t := r.F64()
		if r.Err() == nil && !(t > 0 && t <= 1) {
			return fail("threshold %v for %s out of (0, 1]", t, name)
		}
		if a.thresholds == nil {
			a.thresholds = map[string]float64{}
		}
		a.thresholds[name] = t
	}
	if err := r.Done(); err != nil {
		return fail("%v", err)
	}
	if old != nil {
		a.caps = old.caps
	}
	e.agents[agentID] = a
	return nil
}
