package policy

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxSize caps the bytes Parse accepts (the registry caps SetPolicy documents lower).
const MaxSize = 64 << 10

// Limits on the number of entries, so a document stays small to hold and to check.
const (
	MaxRules        = 256
	MaxModels       = 64
	MaxFeatures     = 32
	MaxRevokeQuorum = 64 // the registry's MaxNodes
)

// Bounds of response.throttle_rate (messages per second) and response.throttle_burst.
const (
	MinThrottleRate  = 1.0 / 3600 // one message an hour
	MaxThrottleRate  = 10000
	MaxThrottleBurst = 10000
)

// Action is one step of the response ladder, in increasing severity.
type Action string

const (
	ActionAlert      Action = "alert"
	ActionThrottle   Action = "throttle"
	ActionQuarantine Action = "quarantine"
	ActionRevoke     Action = "revoke"
)

// actions in increasing severity; the ladder must follow this order.
var actions = []Action{ActionAlert, ActionThrottle, ActionQuarantine, ActionRevoke}

func (a Action) severity() int { return slices.Index(actions, a) }

// Unit is the unit a threshold is written in.
type Unit uint8

const (
	UnitNone      Unit = iota // a plain number
	UnitPercent               // 80%: 0..100
	UnitBytes                 // 64MiB, stored in bytes
	UnitPerMinute             // 100/m, 5/s, 600/h, stored per minute
)

func (u Unit) String() string {
	switch u {
	case UnitPercent:
		return "percent"
	case UnitBytes:
		return "bytes"
	case UnitPerMinute:
		return "per minute"
	}
	return "plain number"
}

// metrics maps each metric a rule may name to the threshold units it accepts. Add a metric
// here when the sidecar or node starts reporting it.
var metrics = map[string][]Unit{
	"cpu_usage":             {UnitPercent, UnitNone},
	"memory_bytes":          {UnitBytes, UnitNone},
	"open_files":            {UnitNone},
	"threads":               {UnitNone},
	"net_bytes":             {UnitBytes, UnitNone},
	"messages_per_minute":   {UnitPerMinute, UnitNone},
	"refusals_per_minute":   {UnitPerMinute, UnitNone},
	"errors_per_minute":     {UnitPerMinute, UnitNone},
	"tool_calls_per_minute": {UnitPerMinute, UnitNone},
	"latency_ms":            {UnitNone},
}

// modelTypes are the model types threat_detection accepts.
var modelTypes = map[string]bool{"anomaly_detection": true}

// algorithms are the detector algorithms a model may name. Add one here when detector/ gains it.
var algorithms = map[string]bool{
	"lstm": true, "ngram": true, "ewma": true, "gaussian": true, "cad": true,
	"rrcf": true, "hst": true, "ensemble": true, "cover": true,
}

// Metrics returns the metric names a rule may use, sorted.
func Metrics() []string { return sortedKeys(metrics) }

// Algorithms returns the algorithm names a model may use, sorted.
func Algorithms() []string { return sortedKeys(algorithms) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Threshold is a rule's limit: Value in Unit (bytes for UnitBytes, per minute for UnitPerMinute).
type Threshold struct {
	Value float64
	Unit  Unit
}

// String is the canonical form, which ParseThreshold reads back exactly.
func (t Threshold) String() string {
	v := strconv.FormatFloat(t.Value, 'g', -1, 64)
	switch t.Unit {
	case UnitPercent:
		return v + "%"
	case UnitBytes:
		return v + "B"
	case UnitPerMinute:
		return v + "/m"
	}
	return v
}

var byteUnits = []struct {
	suffix string
	mult   float64
}{ // longest suffixes first
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// ParseThreshold reads "80%", "0.5", "64MiB", "1GB", "100/m", "5/s" or "600/h".
func ParseThreshold(s string) (Threshold, error) {
	s = strings.TrimSpace(s)
	num := func(v string) (float64, error) {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%q is not a number, a percentage (80%%), a size (64MiB) or a rate (100/m)", s)
		}
		if f < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		return f, nil
	}
	if v, ok := strings.CutSuffix(s, "%"); ok {
		f, err := num(v)
		return Threshold{f, UnitPercent}, err
	}
	if v, per, ok := strings.Cut(s, "/"); ok {
		perMin := map[string]float64{"s": 60, "m": 1, "min": 1, "h": 1.0 / 60}
		m, known := perMin[per]
		if !known {
			return Threshold{}, fmt.Errorf("%q: rate unit %q, want /s, /m or /h", s, per)
		}
		f, err := num(v)
		return Threshold{f * m, UnitPerMinute}, err
	}
	for _, u := range byteUnits {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := num(v)
			return Threshold{f * u.mult, UnitBytes}, err
		}
	}
	f, err := num(s)
	return Threshold{f, UnitNone}, err
}

// ParseRate reads a message rate, "1/s", "30/m", "600/h" or a plain number of messages per
// second, and returns it in messages per second. It does not check the bounds (Validate does).
func ParseRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	v, per, hasUnit := strings.Cut(s, "/")
	div := 1.0
	if hasUnit {
		d, ok := map[string]float64{"s": 1, "m": 60, "min": 60, "h": 3600}[per]
		if !ok {
			return 0, fmt.Errorf("%q: rate unit %q, want /s, /m or /h", s, per)
		}
		div = d
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a rate such as 1/s, 30/m or 600/h", s)
	}
	if f <= 0 {
		return 0, fmt.Errorf("%q must be positive", s)
	}
	return f / div, nil
}

// FormatRate is the canonical form of a rate in messages per second, which ParseRate reads back
// exactly: a whole number per second, minute or hour when there is one ("2/s", "30/m", "1/h"),
// else per second ("0.7/s").
func FormatRate(perSecond float64) string {
	for _, u := range []struct {
		unit string
		mult float64
	}{{"/s", 1}, {"/m", 60}, {"/h", 3600}} {
		if n := perSecond * u.mult; n == math.Trunc(n) && n/u.mult == perSecond && n < 1e15 {
			return strconv.FormatFloat(n, 'f', -1, 64) + u.unit
		}
	}
	return strconv.FormatFloat(perSecond, 'g', -1, 64) + "/s"
}

// Rule is a metric rule: when Metric crosses Threshold (for at least For, if set), take Action.
type Rule struct {
	Metric    string
	Threshold Threshold
	For       time.Duration // 0: at once
	Action    Action
}

// Model is one detector model the nodes run per agent.
type Model struct {
	Type      string         // anomaly_detection
	Algorithm string         // one of Algorithms()
	Features  []string       // optional
	Params    map[string]any // optional, algorithm-specific, free-form
}

// Monitoring is the sidecar's sampling and the metric rules.
type Monitoring struct {
	Enabled  bool
	Interval time.Duration // how often the sidecar samples; default 10s
	Policies []Rule
}

// ThreatDetection is the anomaly models and when their alerts become gossiped signals.
type ThreatDetection struct {
	Enabled        bool
	ShareThreshold float64 // alerts scoring at least this become signals; (0, 1], default 0.9
	Models         []Model
}

// Response is the response ladder.
type Response struct {
	Window        time.Duration // signals from distinct reporters are counted within it; default 5m
	Ladder        []Action      // in increasing severity; default alert, throttle, quarantine, revoke
	QuarantineTTL time.Duration // default 15m
	// ThrottleRate is the messages per second a throttled agent may send; default 1 (1/s),
	// in [MinThrottleRate, MaxThrottleRate]. YAML: "1/s", "30/m", "600/h" or a plain number
	// (per second).
	ThrottleRate  float64
	ThrottleBurst int           // messages a throttled agent may send at once; default 5, 1..MaxThrottleBurst
	ThrottleTTL   time.Duration // how long a throttle lasts; Parse defaults it to quarantine_ttl
	EscalateAfter int           // repeat quarantines before escalating; default 3
	RevokeQuorum  int           // distinct nodes' signals an automated revocation needs; default 2
	// RevokeQuorumSet says the document names revoke_quorum. Only then does a node use it, as a
	// floor above the registry's quorum (`vigil response quorum`), which the FSM enforces.
	RevokeQuorumSet bool
	DryRun          bool // record what would happen, do nothing
}

// Document is a parsed, valid cluster policy (when it comes from Parse or passes Validate).
type Document struct {
	Monitoring      Monitoring
	ThreatDetection ThreatDetection
	Response        Response
	AllowDisabled   bool // monitoring or threat_detection may be disabled
}

// Default returns the policy a cluster runs before any is applied.
func Default() *Document {
	return &Document{
		Monitoring:      Monitoring{Enabled: true, Interval: 10 * time.Second, Policies: []Rule{}},
		ThreatDetection: ThreatDetection{Enabled: true, ShareThreshold: 0.9, Models: []Model{{Type: "anomaly_detection", Algorithm: "ewma"}}},
		Response: Response{Window: 5 * time.Minute, Ladder: slices.Clone(actions), QuarantineTTL: 15 * time.Minute,
			ThrottleRate: 1, ThrottleBurst: 5, ThrottleTTL: 15 * time.Minute, EscalateAfter: 3, RevokeQuorum: 2},
	}
}

// Validate checks every rule of the schema and returns all problems as Errors (without line
// numbers; Parse adds them).
func (d *Document) Validate() error {
	p := &problems{}
	d.validate(p)
	return p.err()
}

func positive(p *problems, path string, v time.Duration) {
	if v <= 0 {
		p.add(path, "must be a positive duration, got %s", v)
	}
}

func (d *Document) validate(p *problems) {
	m := &d.Monitoring
	if !m.Enabled && !d.AllowDisabled {
		p.add("monitoring.enabled", "monitoring is disabled: agents would run unwatched; set allow_disabled: true to allow it")
	}
	positive(p, "monitoring.interval", m.Interval)
	if len(m.Policies) > MaxRules {
		p.add("monitoring.policies", "%d rules, max %d", len(m.Policies), MaxRules)
	}
	for i, r := range m.Policies {
		path := fmt.Sprintf("monitoring.policies[%d]", i)
		units, ok := metrics[r.Metric]
		if !ok {
			p.add(path+".metric", "unknown metric %q; known: %s", r.Metric, strings.Join(Metrics(), ", "))
		} else if !slices.Contains(units, r.Threshold.Unit) {
			p.add(path+".threshold", "%s takes a %s, not a %s (%s)", r.Metric, unitList(units), r.Threshold.Unit, r.Threshold)
		}
		switch {
		case math.IsNaN(r.Threshold.Value) || math.IsInf(r.Threshold.Value, 0) || r.Threshold.Value < 0:
			p.add(path+".threshold", "must be a non-negative number, got %v", r.Threshold.Value)
		case r.Threshold.Unit == UnitPercent && r.Threshold.Value > 100:
			p.add(path+".threshold", "%s is above 100%%", r.Threshold)
		}
		if r.For < 0 {
			p.add(path+".for", "must be a positive duration, got %s", r.For)
		}
		if r.Action.severity() < 0 {
			p.add(path+".action", "unknown action %q; want %s", r.Action, actionList())
		}
	}

	t := &d.ThreatDetection
	if !t.Enabled && !d.AllowDisabled {
		p.add("threat_detection.enabled", "threat detection is disabled: no anomaly would be found; set allow_disabled: true to allow it")
	}
	if !(t.ShareThreshold > 0 && t.ShareThreshold <= 1) {
		p.add("threat_detection.share_threshold", "must be in (0, 1], got %v", t.ShareThreshold)
	}
	if t.Enabled && len(t.Models) == 0 {
		p.add("threat_detection.models", "threat detection is enabled with no models: nothing would run")
	}
	if len(t.Models) > MaxModels {
		p.add("threat_detection.models", "%d models, max %d", len(t.Models), MaxModels)
	}
	for i, md := range t.Models {
		path := fmt.Sprintf("threat_detection.models[%d]", i)
		if !modelTypes[md.Type] {
			p.add(path+".type", "unknown model type %q; want %s", md.Type, strings.Join(sortedKeys(modelTypes), ", "))
		}
		if !algorithms[md.Algorithm] {
			p.add(path+".algorithm", "unknown algorithm %q; known: %s", md.Algorithm, strings.Join(Algorithms(), ", "))
		}
		if len(md.Features) > MaxFeatures {
			p.add(path+".features", "%d features, max %d", len(md.Features), MaxFeatures)
		}
		seen := map[string]bool{}
		for j, f := range md.Features {
			fp := fmt.Sprintf("%s.features[%d]", path, j)
			if f == "" || len(f) > 64 {
				p.add(fp, "must be 1..64 characters")
			} else if seen[f] {
				p.add(fp, "duplicate feature %q", f)
			}
			seen[f] = true
		}
	}

	r := &d.Response
	positive(p, "response.window", r.Window)
	positive(p, "response.quarantine_ttl", r.QuarantineTTL)
	positive(p, "response.throttle_ttl", r.ThrottleTTL)
	if !(r.ThrottleRate >= MinThrottleRate && r.ThrottleRate <= MaxThrottleRate) {
		p.add("response.throttle_rate", "must be between 1/h and %d/s, got %s", MaxThrottleRate, FormatRate(r.ThrottleRate))
	}
	if r.ThrottleBurst < 1 || r.ThrottleBurst > MaxThrottleBurst {
		p.add("response.throttle_burst", "must be in 1..%d, got %d", MaxThrottleBurst, r.ThrottleBurst)
	}
	if len(r.Ladder) == 0 {
		p.add("response.ladder", "must name at least one action")
	}
	last := -1
	for i, a := range r.Ladder {
		path := fmt.Sprintf("response.ladder[%d]", i)
		s := a.severity()
		switch {
		case s < 0:
			p.add(path, "unknown action %q; want %s", a, actionList())
		case s <= last:
			p.add(path, "%q is out of order or repeated: the ladder runs %s", a, actionList())
		default:
			last = s
		}
	}
	if r.EscalateAfter < 1 {
		p.add("response.escalate_after", "must be at least 1, got %d", r.EscalateAfter)
	}
	if r.RevokeQuorum < 1 || r.RevokeQuorum > MaxRevokeQuorum {
		p.add("response.revoke_quorum", "must be in 1..%d, got %d", MaxRevokeQuorum, r.RevokeQuorum)
	}
}

func unitList(us []Unit) string {
	s := make([]string, len(us))
	for i, u := range us {
		s[i] = u.String()
	}
	return strings.Join(s, " or ")
}

func actionList() string {
	s := make([]string, len(actions))
	for i, a := range actions {
		s[i] = string(a)
	}
	return strings.Join(s, " < ")
}

// The canonical YAML shape: every key, in schema order.
type (
	yDoc struct {
		Monitoring      yMon  `yaml:"monitoring"`
		ThreatDetection yTD   `yaml:"threat_detection"`
		Response        yResp `yaml:"response"`
		AllowDisabled   bool  `yaml:"allow_disabled"`
	}
	yMon struct {
		Enabled  bool    `yaml:"enabled"`
		Interval string  `yaml:"interval"`
		Policies []yRule `yaml:"policies"`
	}
	yRule struct {
		Metric    string `yaml:"metric"`
		Threshold string `yaml:"threshold"`
		For       string `yaml:"for,omitempty"`
		Action    string `yaml:"action"`
	}
	yTD struct {
		Enabled        bool     `yaml:"enabled"`
		ShareThreshold float64  `yaml:"share_threshold"`
		Models         []yModel `yaml:"models"`
	}
	yModel struct {
		Type      string         `yaml:"type"`
		Algorithm string         `yaml:"algorithm"`
		Features  []string       `yaml:"features,omitempty,flow"`
		Params    map[string]any `yaml:"params,omitempty"`
	}
	yResp struct {
		Window        string   `yaml:"window"`
		Ladder        []string `yaml:"ladder,flow"`
		QuarantineTTL string   `yaml:"quarantine_ttl"`
		ThrottleRate  string   `yaml:"throttle_rate"`
		ThrottleBurst int      `yaml:"throttle_burst"`
		ThrottleTTL   string   `yaml:"throttle_ttl"`
		EscalateAfter int      `yaml:"escalate_after"`
		RevokeQuorum  *int     `yaml:"revoke_quorum,omitempty"` // only when the document names it
		DryRun        bool     `yaml:"dry_run"`
	}
)

// Canonical renders d as YAML with every key (revoke_quorum only when the document names it:
// otherwise the registry's quorum governs), in schema order, map keys sorted: the same
// document always renders to the same bytes, and Parse reads them back to an equal document.
func (d *Document) Canonical() []byte {
	y := yDoc{
		Monitoring: yMon{Enabled: d.Monitoring.Enabled, Interval: d.Monitoring.Interval.String(), Policies: []yRule{}},
		ThreatDetection: yTD{Enabled: d.ThreatDetection.Enabled, ShareThreshold: d.ThreatDetection.ShareThreshold,
			Models: []yModel{}},
		Response: yResp{Window: d.Response.Window.String(), QuarantineTTL: d.Response.QuarantineTTL.String(),
			ThrottleRate: FormatRate(d.Response.ThrottleRate), ThrottleBurst: d.Response.ThrottleBurst,
			ThrottleTTL: d.Response.ThrottleTTL.String(), EscalateAfter: d.Response.EscalateAfter, DryRun: d.Response.DryRun,
			Ladder: []string{}},
		AllowDisabled: d.AllowDisabled,
	}
	if d.Response.RevokeQuorumSet {
		y.Response.RevokeQuorum = &d.Response.RevokeQuorum
	}
	for _, r := range d.Monitoring.Policies {
		yr := yRule{Metric: r.Metric, Threshold: r.Threshold.String(), Action: string(r.Action)}
		if r.For != 0 {
			yr.For = r.For.String()
		}
		y.Monitoring.Policies = append(y.Monitoring.Policies, yr)
	}
	for _, m := range d.ThreatDetection.Models {
		y.ThreatDetection.Models = append(y.ThreatDetection.Models, yModel{Type: m.Type, Algorithm: m.Algorithm,
			Features: m.Features, Params: m.Params})
	}
	for _, a := range d.Response.Ladder {
		y.Response.Ladder = append(y.Response.Ladder, string(a))
	}
	b, err := yaml.Marshal(&y)
	if err != nil {
		// Only Params can hold a value yaml cannot render, and Params come from YAML.
		panic(fmt.Sprintf("policy: canonical form: %v", err))
	}
	return b
}
