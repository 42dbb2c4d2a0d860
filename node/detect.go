package node

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/catalog"
	"github.com/vigil-mesh/vigil/detector/engine"
	"github.com/vigil-mesh/vigil/detector/rules"
	"github.com/vigil-mesh/vigil/gossip/response"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/identity/policy"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/alerts"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

// Detection shell limits and periods.
const (
	detectQueue      = 4096             // telemetry records waiting for the engine; more are dropped (counted)
	detectTick       = time.Second      // how often the policy version and capabilities are checked
	capsRefresh      = 10 * time.Second // how often a known agent's capabilities are re-read
	checkpointPeriod = time.Minute      // how often every agent's engine state is checkpointed
	ckptAgentPrefix  = "agent/"
	ckptSeqPrefix    = "sequence/"
)

// detection is the node's IO shell around detector/engine: it feeds the engine the node's
// telemetry (one goroutine, bounded queue), stores its alerts, turns strong alerts into signed
// anomaly signals, and follows the cluster policy.
type detection struct {
	n     *Node
	store *alerts.Store
	queue chan telemetry.Record
	unsub func()
	done  chan struct{}
	wg    sync.WaitGroup

	dropped, failed prometheus.Counter
	raised          *prometheus.CounterVec
	phase           *prometheus.GaugeVec // the sequence model's phase (1 for the current one)
	baseSessions    prometheus.Gauge     // sessions in the baseline so far
	fits            chan fitResult       // sequence models fitted off the loop

	mu  sync.Mutex // guards everything below
	eng *engine.Engine
	// The sequence model, shared by all agents: its algorithm ("" = none), a factory for the
	// model a baseline is fitted into, and the engine generation a fit belongs to (a fit of
	// an engine that a policy change replaced is dropped).
	seqAlg  string
	newSeq  func() (detector.SequenceModel, error)
	gen     uint64
	seqSeen engine.Phase
	version uint64 // policy version the engine follows (0 = the default policy)
	doc     *policy.Document
	share   float64
	caps    map[string]time.Time // agents with state → when their capabilities were last set
	// signaled is when this node last signed a signal per agent and model (signalDue).
	signaled map[string]time.Time
	// unfit holds agents whose stored checkpoint did not fit the engine. Until settled (the
	// node is ready and the engine follows the policy the registry had then), their stored
	// checkpoint is not overwritten: a node that starts before its registry has replayed the
	// policy builds from an older one, and must not replace what it learned under the real one.
	unfit   map[string]bool
	seqBad  bool // the same for the stored sequence checkpoint
	settled bool
}

// fitResult is a sequence model fitted on a baseline, for engine generation gen.
type fitResult struct {
	gen      uint64
	model    detector.SequenceModel
	err      error
	sessions int
	took     time.Duration
}

func (n *Node) startDetection() error {
	st := n.state
	d := &detection{n: n, store: st, queue: make(chan telemetry.Record, detectQueue), done: make(chan struct{}),
		caps: map[string]time.Time{}, unfit: map[string]bool{}, fits: make(chan fitResult)}
	d.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_detect_dropped_total",
		Help: "Telemetry records the detector dropped because its queue was full."})
	d.failed = prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_detect_refused_total",
		Help: "Telemetry records the detector engine refused as malformed."})
	d.raised = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_alerts_total",
		Help: "Alerts raised on this node, by model class (rule, capability, metric, hst, rrcf, sequence) and action."}, []string{"model", "action"})
	d.phase = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vigil_detect_sequence_phase",
		Help: "1 for the phase the node's sequence model is in (none, baseline, fitting, fitted), 0 for the others."}, []string{"phase"})
	d.baseSessions = prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_detect_baseline_sessions",
		Help: "Completed action sessions collected for the sequence model's baseline so far."})
	for _, c := range []prometheus.Collector{d.dropped, d.failed, d.raised, d.phase, d.baseSessions} {
		if err := n.metrics.reg.Register(c); err != nil {
			return fmt.Errorf("node: metrics: %w", err)
		}
	}
	if err := d.follow(true); err != nil {
		return err
	}
	n.detect = d
	n.closers = append(n.closers, d.close)
	d.unsub = n.telemetry.Subscribe(func(r telemetry.Record) {
		select {
		case d.queue <- r:
		default:
			d.dropped.Inc()
		}
	})
	d.wg.Add(1)
	go d.loop()
	return nil
}

// close stops the loop and checkpoints every agent (the node closes the store afterwards).
func (d *detection) close() error {
	d.unsub()
	close(d.done)
	d.wg.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.checkpointLocked()
}

func (d *detection) loop() {
	defer d.wg.Done()
	tick := time.NewTicker(detectTick)
	defer tick.Stop()
	lastCkpt := time.Now()
	var out []engine.Alert
	for {
		select {
		case <-d.done:
			return
		case r := <-d.queue:
			out = d.observe(r, out[:0])
			d.handle(out)
		case res := <-d.fits:
			d.fitted(res)
		case now := <-tick.C:
			if err := d.follow(false); err != nil {
				d.n.log.Warn("node: detection: policy not applied; keeping the previous one", "err", err)
			}
			d.refreshCaps(now)
			d.settle()
			d.mu.Lock()
			d.eng.EndIdle(now.UnixNano())
			d.fitLocked()
			d.mu.Unlock()
			if now.Sub(lastCkpt) >= checkpointPeriod {
				lastCkpt = now
				d.mu.Lock()
				if err := d.checkpointLocked(); err != nil {
					d.n.log.Warn("node: detection: checkpoint", "err", err)
				}
				d.mu.Unlock()
			}
		}
	}
}

// records maps one telemetry record onto engine records: a send is a Message (or a Refusal)
// and an Event naming the capability; a reported metric event is a Metric; any other
// reported event is an Event without an action (it counts, it is not a capability).
// Receipts are about the sender and feed nothing here.
func records(r telemetry.Record, buf []engine.Record) []engine.Record {
	base := engine.Record{Agent: r.Agent, Time: r.Time.UnixNano()}
	switch r.Kind {
	case telemetry.KindSend:
		m := base
		m.Kind, m.Peer, m.Bytes, m.Latency = engine.Message, r.Peer, int64(r.Bytes), r.Latency
		if r.Outcome != telemetry.OutcomeOK {
			m.Kind = engine.Refusal
		}
		buf = append(buf, m)
		if r.Action != "" {
			// The router authorised the verb against the sender's capabilities (ACTION or
			// ACTION:TARGET); only a refusal for want of one is a capability violation.
			e := base
			e.Kind, e.Action = engine.Event, r.Action
			e.Authorized = r.Outcome != agentproto.CodeNoCapability
			buf = append(buf, e)
		}
	case telemetry.KindEvent:
		kind, name, _ := strings.Cut(r.Action, ":")
		e := base
		if kind == "metric" {
			e.Kind, e.Metric, e.Value = engine.Metric, name, r.Value
		} else {
			e.Kind = engine.Event
		}
		buf = append(buf, e)
	}
	return buf
}

func (d *detection) observe(r telemetry.Record, out []engine.Alert) []engine.Alert {
	if r.Agent == "" {
		return out
	}
	var buf [2]engine.Record
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.caps[r.Agent]; !ok {
		d.caps[r.Agent] = time.Time{}
		d.setCapsLocked(r.Agent, time.Now())
	}
	for _, er := range records(r, buf[:0]) {
		var err error
		if out, err = d.eng.Observe(er, out); err != nil {
			d.failed.Inc()
			d.n.log.Debug("node: detection: record refused", "agent", r.Agent, "err", err)
		}
	}
	d.fitLocked()
	return out
}

// fitLocked starts fitting the sequence model when the engine's baseline is complete: a new
// model is fitted on the baseline's sessions in a goroutine (an LSTM takes about 0.2 s for
// 200 sessions, 2 s for 2,000: never on the telemetry path) and handed to the loop (fitted).
// It also keeps the phase gauges current.
func (d *detection) fitLocked() {
	st := d.eng.SequenceStatus()
	if st.Phase != d.seqSeen {
		for _, p := range []engine.Phase{engine.PhaseNone, engine.PhaseBaseline, engine.PhaseFitting, engine.PhaseFitted} {
			v := 0.0
			if p == st.Phase {
				v = 1
			}
			d.phase.WithLabelValues(p.String()).Set(v)
		}
		d.seqSeen = st.Phase
	}
	d.baseSessions.Set(float64(st.Sessions))
	if !d.eng.PendingFit() {
		return
	}
	sessions := d.eng.TakeBaseline()
	gen, build, alg := d.gen, d.newSeq, d.seqAlg
	d.n.log.Info("node: detection: baseline complete; fitting the sequence model", "algorithm", alg,
		"sessions", len(sessions), "actions", st.Actions)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		start := time.Now()
		m, err := build()
		if err == nil {
			err = m.Fit(sessions) // reads sessions only; the engine keeps them unchanged
		}
		select {
		case d.fits <- fitResult{gen: gen, model: m, err: err, sessions: len(sessions), took: time.Since(start)}:
		case <-d.done:
		}
	}()
}

// fitted hands a fitted model to the engine it was fitted for, and checkpoints it at once.
func (d *detection) fitted(res fitResult) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if res.gen != d.gen {
		return // the policy changed meanwhile: the new engine fits its own baseline
	}
	if res.err != nil {
		d.n.log.Warn("node: detection: fitting the sequence model failed; its baseline starts afresh", "algorithm", d.seqAlg, "err", res.err)
		if err := d.eng.FitFailed(); err != nil {
			d.n.log.Warn("node: detection: sequence model", "err", err)
		}
		d.fitLocked()
		return
	}
	if err := d.eng.FitDone(res.model); err != nil {
		d.n.log.Warn("node: detection: fitted sequence model not used", "algorithm", d.seqAlg, "err", err)
		return
	}
	d.n.log.Info("node: detection: baseline complete, model fitted", "algorithm", d.seqAlg,
		"sessions", res.sessions, "took", res.took)
	d.fitLocked()
	if err := d.checkpointSequenceLocked(); err != nil {
		d.n.log.Warn("node: detection: checkpoint of the fitted sequence model", "err", err)
	}
}

// settle marks the detection settled once the node is ready and the engine has followed the
// policy the registry holds at that moment (follow ran in the same tick, just before).
func (d *detection) settle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled || d.n.ready() != nil {
		return
	}
	var version uint64
	d.n.consensusNode().Read(func(r *identity.Registry) { version, _ = r.Policy() })
	if version == d.version {
		d.settled = true
		clear(d.unfit)
		d.seqBad = false
	}
}

// setCapsLocked gives the engine the capabilities the registry holds for agent. An agent the
// registry no longer holds as active (revoked, removed, expired) is forgotten: its engine
// state and its stored checkpoint go.
func (d *detection) setCapsLocked(agent string, now time.Time) {
	var (
		a  identity.Agent
		ok bool
	)
	reg := false
	d.n.consensusNode().Read(func(r *identity.Registry) { a, ok = r.Agent(agent); reg = r.Initialised() })
	if !reg {
		return // the registry has not replayed yet: nothing to judge by
	}
	if !ok || a.Status == identity.StatusRevoked {
		d.eng.Forget(agent)
		delete(d.caps, agent)
		delete(d.unfit, agent)
		if err := d.store.DeleteCheckpoint(ckptAgentPrefix + agent); err != nil {
			d.n.log.Warn("node: detection: checkpoint of a removed agent", "agent", agent, "err", err)
		}
		return
	}
	if err := d.eng.SetCapabilities(agent, a.Capabilities); err != nil {
		d.n.log.Warn("node: detection: capabilities", "agent", agent, "err", err)
		return
	}
	d.caps[agent] = now
}

func (d *detection) refreshCaps(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for agent, at := range d.caps {
		if now.Sub(at) >= capsRefresh {
			d.setCapsLocked(agent, now)
		}
	}
}

// modelClass is the bounded label of an alert's model: "rule:cpu_usage > 80%" → "rule".
func modelClass(model string) string {
	c, _, _ := strings.Cut(model, ":")
	return c
}

// signalDetector turns a model name into a signal's detector name (printable ASCII, no
// spaces, at most identity.MaxDetectorLen bytes).
func signalDetector(model string) string {
	b := []byte(model)
	for i, c := range b {
		if c <= ' ' || c > '~' {
			b[i] = '_'
		}
	}
	return string(b[:min(len(b), identity.MaxDetectorLen)])
}

// handle stores each alert and shares the strong ones with the mesh.
func (d *detection) handle(out []engine.Alert) {
	if len(out) == 0 {
		return
	}
	d.mu.Lock()
	share := d.share
	d.mu.Unlock()
	for _, a := range out {
		d.raised.WithLabelValues(modelClass(a.Model), a.Action.String()).Inc()
		st, err := d.store.Add(alerts.Alert{Agent: a.Agent, Model: a.Model, Score: a.Score, Evidence: a.Evidence,
			Time: time.Unix(0, a.Time).UTC(), Action: a.Action.String()})
		if err != nil {
			d.n.log.Error("node: detection: alert not stored", "agent", a.Agent, "model", a.Model, "err", err)
			continue
		}
		d.n.log.Info("node: alert", "id", st.ID, "agent", a.Agent, "model", a.Model, "score", a.Score,
			"action", st.Action, "evidence", a.Evidence)
		if d.n.gossip == nil || (a.Score < share && a.Action < rules.Quarantine) {
			continue
		}
		if !d.signalDue(a.Agent, a.Model, time.Now()) {
			continue // stored as an alert; the mesh heard this agent and model a moment ago
		}
		if err := d.n.ReportAnomaly(a.Agent, signalDetector(a.Model), a.Score, sha256.Sum256([]byte(a.Evidence))); err != nil {
			d.n.log.Warn("node: detection: signal not sent", "alert", st.ID, "err", err)
			continue
		}
		if err := d.store.MarkShared(st.ID); err != nil {
			d.n.log.Warn("node: detection: alert", "id", st.ID, "err", err)
		}
	}
}

// signalEvery is the least time between two signals this node signs about one agent and one
// model: an agent that retries a forbidden capability in a loop raises an alert per attempt,
// but the mesh hears of it once per interval, so one agent cannot fill the node's share of the
// gossip rate limit (which its revocations and other signals also use). Every alert is stored.
const signalEvery = 5 * time.Second

// maxSignalMemory bounds the (agent, model) pairs remembered for signalEvery.
const maxSignalMemory = 65536

// signalDue reports whether a signal about agent from model may be sent at now, and if so
// records it.
func (d *detection) signalDue(agent, model string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := agent + "\x00" + model
	if last, ok := d.signaled[key]; ok && now.Sub(last) < signalEvery {
		return false
	}
	if d.signaled == nil {
		d.signaled = map[string]time.Time{}
	}
	if len(d.signaled) >= maxSignalMemory {
		for k, t := range d.signaled {
			if now.Sub(t) >= signalEvery {
				delete(d.signaled, k)
			}
		}
		if len(d.signaled) >= maxSignalMemory {
			clear(d.signaled) // all recent: forgetting lets a few through early, never blocks
		}
	}
	d.signaled[key] = now
	return true
}

// follow rebuilds the engine when the registry's policy version differs from the one it
// follows (first: build from the current policy and restore the checkpoints). A policy that
// does not parse or build leaves the running engine unchanged and returns the error.
func (d *detection) follow(first bool) error {
	var (
		version uint64
		raw     []byte
	)
	d.n.consensusNode().Read(func(r *identity.Registry) { version, raw = r.Policy() })
	d.mu.Lock()
	defer d.mu.Unlock()
	if !first && version == d.version {
		return nil
	}
	doc := policy.Default()
	if version > 0 {
		var err error
		if doc, err = policy.Parse(raw); err != nil {
			d.version = version // do not retry the same bad version every tick
			return fmt.Errorf("policy version %d: %w", version, err)
		}
	}
	cfg, newSeq, err := engineConfig(doc, d.n.log.Warn)
	if err != nil {
		d.version = version
		return fmt.Errorf("policy version %d: %w", version, err)
	}
	eng, err := engine.New(cfg)
	if err != nil {
		d.version = version
		return fmt.Errorf("policy version %d: %w", version, err)
	}
	// Carry what normal looks like over: the running engine's state (or, at start, the stored
	// checkpoints) is restored into the new one where its configuration still fits.
	if !first {
		if err := d.checkpointLocked(); err != nil {
			d.n.log.Warn("node: detection: checkpoint before policy change", "err", err)
		}
	}
	old := d.doc
	d.eng, d.newSeq, d.version, d.doc, d.share = eng, newSeq, version, doc, doc.ThreatDetection.ShareThreshold
	d.seqAlg, d.seqSeen = "", engine.Phase(255)
	if cfg.Sequence != nil {
		d.seqAlg = cfg.Sequence.Algorithm()
	}
	d.gen++
	d.restoreLocked()
	d.fitLocked()
	if old == nil || !slices.Equal(old.Response.Ladder, doc.Response.Ladder) || old.Response.Window != doc.Response.Window ||
		old.Response.QuarantineTTL != doc.Response.QuarantineTTL || old.Response.EscalateAfter != doc.Response.EscalateAfter ||
		old.Response.DryRun != doc.Response.DryRun || old.Response.ThrottleRate != doc.Response.ThrottleRate ||
		old.Response.ThrottleBurst != doc.Response.ThrottleBurst || old.Response.ThrottleTTL != doc.Response.ThrottleTTL ||
		old.Response.RevokeQuorum != doc.Response.RevokeQuorum || old.Response.RevokeQuorumSet != doc.Response.RevokeQuorumSet {
		if err := d.n.applyResponse(doc.Response); err != nil {
			d.n.log.Warn("node: detection: response section not applied", "err", err)
		}
	}
	d.n.log.Info("node: detection follows policy", "version", version, "rules", len(doc.Monitoring.Policies),
		"models", len(doc.ThreatDetection.Models), "share_threshold", d.share)
	return nil
}

// engineConfig maps a policy onto an engine configuration: monitoring rules → rules.Set, the
// feature interval = monitoring.interval, models via the catalog (first metric, vector and
// sequence model of each kind; a model the catalog does not have yet is skipped with a warning).
// The sequence model's params also set the engine's baseline, session gap and fine-tuning
// (catalog.SequenceEngineParams); it returns a factory of fresh sequence models to fit the
// baseline into (nil = no sequence model).
func engineConfig(doc *policy.Document, warn func(string, ...any)) (engine.Config, func() (detector.SequenceModel, error), error) {
	cfg := engine.DefaultConfig()
	cfg.Vector = nil
	cfg.Interval = doc.Monitoring.Interval
	if doc.Monitoring.Enabled && len(doc.Monitoring.Policies) > 0 {
		rs := make([]rules.Rule, 0, len(doc.Monitoring.Policies))
		for i, pr := range doc.Monitoring.Policies {
			th, err := rules.ParseThreshold(pr.Threshold.String())
			if err != nil {
				return cfg, nil, fmt.Errorf("monitoring.policies[%d].threshold: %w", i, err)
			}
			act, err := rules.ParseAction(string(pr.Action))
			if err != nil {
				return cfg, nil, fmt.Errorf("monitoring.policies[%d].action: %w", i, err)
			}
			rs = append(rs, rules.Rule{Metric: pr.Metric, Threshold: th, For: pr.For, Action: act})
		}
		set, err := rules.NewSet(rs)
		if err != nil {
			return cfg, nil, fmt.Errorf("monitoring.policies: %w", err)
		}
		cfg.Rules = set
	}
	var (
		seq    detector.SequenceModel
		newSeq func() (detector.SequenceModel, error)
	)
	if !doc.ThreatDetection.Enabled {
		return cfg, nil, nil
	}
	for i, m := range doc.ThreatDetection.Models {
		path := fmt.Sprintf("threat_detection.models[%d]", i)
		e, err := catalog.Lookup(m.Algorithm)
		if err != nil {
			warn("node: detection: model not available on this node; skipped", "model", path, "algorithm", m.Algorithm)
			continue
		}
		alg, params := m.Algorithm, m.Params
		switch e.Kind {
		case catalog.Metric:
			if cfg.Metric != nil {
				warn("node: detection: only the first metric model runs; skipped", "model", path)
				continue
			}
			if _, err := catalog.NewMetric(alg, params); err != nil {
				return cfg, nil, fmt.Errorf("%s: %w", path, err)
			}
			cfg.Metric = func(string) (detector.MetricModel, error) { return catalog.NewMetric(alg, params) }
		case catalog.Vector:
			if cfg.Vector != nil {
				warn("node: detection: only the first vector model runs; skipped", "model", path)
				continue
			}
			if _, err := catalog.NewVector(alg, len(engine.Features), params); err != nil {
				return cfg, nil, fmt.Errorf("%s: %w", path, err)
			}
			cfg.Vector = func() (detector.VectorModel, error) { return catalog.NewVector(alg, len(engine.Features), params) }
		case catalog.Sequence:
			if seq != nil {
				warn("node: detection: only the first sequence model runs; skipped", "model", path)
				continue
			}
			rest, err := catalog.SplitSequenceParams(params, &cfg)
			if err != nil {
				return cfg, nil, fmt.Errorf("%s.params.%w", path, err)
			}
			if seq, err = catalog.NewSequence(alg, rest); err != nil {
				return cfg, nil, fmt.Errorf("%s: %w", path, err)
			}
			online := false
			if o, ok := seq.(interface{ LearnsOnline() bool }); ok {
				online = o.LearnsOnline()
			}
			if cfg.Baseline.Sessions == 0 && !online {
				return cfg, nil, fmt.Errorf("%s.params.baseline_sessions: 0 (no baseline) needs a model that learns online "+
					"(ngram with online: true); %s learns only from its baseline", path, alg)
			}
			if cfg.TuneInterval > 0 && online {
				return cfg, nil, fmt.Errorf("%s.params.tune_interval: %s with online: true already learns from every action", path, alg)
			}
			newSeq = func() (detector.SequenceModel, error) { return catalog.NewSequence(alg, rest) }
		}
	}
	cfg.Sequence = seq
	return cfg, newSeq, nil
}

// checkpointLocked stores every agent's engine state and the shared sequence model.
func (d *detection) checkpointLocked() error {
	var errs []error
	for agent := range d.caps {
		if d.unfit[agent] && !d.settled {
			continue // keep the stored checkpoint until the engine follows the real policy
		}
		b, err := d.eng.Checkpoint(agent)
		if err != nil {
			continue // no state for it in this engine (e.g. every record was refused)
		}
		errs = append(errs, d.store.PutCheckpoint(ckptAgentPrefix+agent, b))
	}
	errs = append(errs, d.checkpointSequenceLocked())
	return errors.Join(errs...)
}

// checkpointSequenceLocked stores the sequence model's state: the shared vocabulary, the
// baseline (in progress, or complete and being fitted) or the fitted model.
func (d *detection) checkpointSequenceLocked() error {
	if d.seqAlg == "" || (d.seqBad && !d.settled) {
		return nil
	}
	b, err := d.eng.CheckpointSequence()
	if err != nil {
		return err
	}
	return d.store.PutCheckpoint(ckptSeqPrefix+d.seqAlg, b)
}

// restoreLocked loads the stored checkpoints into the engine. One that does not fit the
// current configuration (the policy changed the model) is dropped with a log line: that agent
// starts learning afresh.
func (d *detection) restoreLocked() {
	err := d.store.Checkpoints(func(name string, data []byte) error {
		switch {
		case strings.HasPrefix(name, ckptAgentPrefix):
			agent := name[len(ckptAgentPrefix):]
			if err := d.eng.Restore(agent, data); err != nil {
				d.n.log.Info("node: detection: checkpoint does not fit the current policy; agent starts afresh", "agent", agent, "err", err)
				d.eng.Forget(agent)
				d.unfit[agent] = true
				return nil
			}
			delete(d.unfit, agent)
			d.caps[agent] = time.Time{} // capabilities are set on the next tick
		case d.seqAlg != "" && name == ckptSeqPrefix+d.seqAlg:
			if err := d.eng.RestoreSequence(data); err != nil {
				d.n.log.Info("node: detection: sequence checkpoint does not fit the current policy; its baseline starts afresh",
					"algorithm", d.seqAlg, "err", err)
				d.seqBad = true
				return nil
			}
			d.seqBad = false
			st := d.eng.SequenceStatus()
			d.n.log.Info("node: detection: sequence model restored", "algorithm", d.seqAlg, "phase", st.Phase.String(),
				"baseline_sessions", st.Sessions)
		}
		return nil
	})
	if err != nil {
		d.n.log.Warn("node: detection: reading checkpoints", "err", err)
	}
}

// applyResponse maps the policy's response section onto the gossip layer's aggregation
// (window, ladder, quarantine_ttl, throttle_rate, throttle_burst, throttle_ttl, escalate_after,
// dry_run; revoke_quorum, when the document names it, as a floor above the registry's). The aggregator is replaced: signals counted so
// far are forgotten (running throttles and quarantines run to their end).
func (n *Node) applyResponse(p policy.Response) error {
	l := n.gossip
	if l == nil {
		return nil
	}
	def := response.DefaultConfig()
	cfg := def
	cfg.Window, cfg.QuarantineTTL, cfg.EscalateAfter, cfg.DryRun = p.Window, p.QuarantineTTL, p.EscalateAfter, p.DryRun
	cfg.ThrottleRate, cfg.ThrottleBurst, cfg.ThrottleTTL = p.ThrottleRate, p.ThrottleBurst, p.ThrottleTTL
	l.mu.Lock()
	defer l.mu.Unlock()
	cfg.RevokeQuorum = l.agg.Config().RevokeQuorum
	l.policyQuorum = 0
	if p.RevokeQuorumSet { // the policy raises the registry's quorum, never lowers it
		l.policyQuorum = p.RevokeQuorum
		cfg.RevokeQuorum = max(cfg.RevokeQuorum, p.RevokeQuorum)
	}
	cfg.Ladder = nil
	for _, a := range p.Ladder {
		act, err := response.ParseAction(string(a))
		if err != nil {
			return fmt.Errorf("response.ladder: %w", err)
		}
		for _, s := range def.Ladder {
			if s.Action == act {
				if act == response.Revoke {
					s.Reporters, s.Signals = cfg.RevokeQuorum, cfg.RevokeQuorum
				}
				cfg.Ladder = append(cfg.Ladder, s)
			}
		}
	}
	agg, err := response.New(cfg)
	if err != nil {
		return err
	}
	l.agg = agg
	return nil
}

// Alerts is the node's state store: alerts, response decisions and detector checkpoints (nil
// before Start opened it).
func (n *Node) Alerts() *alerts.Store { return n.state }

// ResolveAlert resolves alert id as who; a false positive is reported to the engine
// (engine.Feedback), which raises that agent's threshold for that model. Feedback on a rule or
// capability alert changes nothing in the engine (they follow the policy) and is not an error.
func (n *Node) ResolveAlert(id, who string, falsePositive bool) (alerts.Alert, error) {
	d := n.detect
	if d == nil {
		return alerts.Alert{}, errors.New("node: detection is not running")
	}
	a, err := d.store.Resolve(id, who, falsePositive, time.Now())
	if err != nil {
		return a, err
	}
	n.log.Info("node: alert resolved", "id", id, "by", who, "false_positive", falsePositive, "agent", a.Agent, "model", a.Model)
	if falsePositive {
		act, _ := rules.ParseAction(a.Action)
		d.mu.Lock()
		ferr := d.eng.Feedback(a.Agent, engine.Alert{Agent: a.Agent, Model: a.Model, Score: a.Score,
			Evidence: a.Evidence, Time: a.Time.UnixNano(), Action: act})
		d.mu.Unlock()
		if ferr != nil {
			n.log.Info("node: false-positive feedback not applied to the detector", "id", id, "err", ferr)
		}
	}
	return a, nil
}

// AckAlert acknowledges alert id as who.
func (n *Node) AckAlert(id, who string) (alerts.Alert, error) {
	d := n.detect
	if d == nil {
		return alerts.Alert{}, errors.New("node: detection is not running")
	}
	a, err := d.store.Ack(id, who, time.Now())
	if err == nil {
		n.log.Info("node: alert acknowledged", "id", id, "by", who, "agent", a.Agent, "model", a.Model)
	}
	return a, err
}

// DetectionThreshold is the engine's current alert threshold for agent's model (raised by
// false-positive feedback).
func (n *Node) DetectionThreshold(agent, model string) float64 {
	d := n.detect
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.eng.Threshold(agent, model)
}

// alertBackend is the admin API's view of the node's alerts.
type alertBackend struct{ n *Node }

func (b alertBackend) ListAlerts(q alerts.Query) ([]alerts.Alert, error) {
	st := b.n.Alerts()
	if st == nil {
		return nil, errors.New("node: detection is not running")
	}
	return st.List(q)
}

func (b alertBackend) AckAlert(id, who string) (alerts.Alert, error) { return b.n.AckAlert(id, who) }

func (b alertBackend) ResolveAlert(id, who string, fp bool) (alerts.Alert, error) {
	return b.n.ResolveAlert(id, who, fp)
}
