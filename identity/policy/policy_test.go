package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const full = `monitoring:
  enabled: true
  interval: 10s
  policies:
    - metric: cpu_usage
      threshold: 80%
      for: 30s
      action: alert
    - metric: memory_bytes
      threshold: 64MiB
      action: throttle
    - metric: messages_per_minute
      threshold: 5/s
      action: quarantine
threat_detection:
  enabled: true
  share_threshold: 0.9
  models:
    - type: anomaly_detection
      algorithm: lstm
      features: [actions]
      params: {window: 10, hidden: [32, 16]}
    - type: anomaly_detection
      algorithm: ewma
response:
  window: 5m
  ladder: [alert, throttle, quarantine, revoke]
  quarantine_ttl: 15m
  throttle_rate: 30/m
  throttle_burst: 3
  throttle_ttl: 5m
  escalate_after: 3
  revoke_quorum: 2
  dry_run: false
allow_disabled: false
`

func TestParseFull(t *testing.T) {
	d, err := Parse([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Monitoring.Policies[1].Threshold; got != (Threshold{64 << 20, UnitBytes}) {
		t.Errorf("64MiB = %+v", got)
	}
	if got := d.Monitoring.Policies[2].Threshold; got != (Threshold{300, UnitPerMinute}) {
		t.Errorf("5/s = %+v", got)
	}
	if d.Monitoring.Policies[0].For != 30*time.Second || d.Monitoring.Policies[0].Action != ActionAlert {
		t.Errorf("rule 0 = %+v", d.Monitoring.Policies[0])
	}
	if d.ThreatDetection.Models[0].Params["window"] != 10 {
		t.Errorf("params = %#v", d.ThreatDetection.Models[0].Params)
	}
	if d.Response.RevokeQuorum != 2 || d.Response.QuarantineTTL != 15*time.Minute || d.Response.ThrottleRate != 0.5 ||
		d.Response.ThrottleBurst != 3 || d.Response.ThrottleTTL != 5*time.Minute {
		t.Errorf("response = %+v", d.Response)
	}
}

func TestEmptyIsDefault(t *testing.T) {
	for _, in := range []string{"", "\n", "# only a comment\n", "---\n", "~\n"} {
		d, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !reflect.DeepEqual(d, Default()) {
			t.Errorf("%q: %+v, want Default()", in, d)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default() invalid: %v", err)
	}
}

func TestMissingKeysKeepDefaults(t *testing.T) {
	d, err := Parse([]byte("response:\n  quarantine_ttl: 1h\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Response.QuarantineTTL = time.Hour
	want.Response.ThrottleTTL = time.Hour // throttle_ttl follows quarantine_ttl unless given
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got %+v, want %+v", d, want)
	}
}

func TestThrottleFields(t *testing.T) {
	for _, c := range []struct {
		in    string
		rate  float64
		burst int
		ttl   time.Duration
	}{
		{"", 1, 5, 15 * time.Minute},
		{"response: {throttle_rate: 2}", 2, 5, 15 * time.Minute},
		{"response: {throttle_rate: 0.5/s, throttle_burst: 1}", 0.5, 1, 15 * time.Minute},
		{"response: {throttle_rate: 600/h}", 600.0 / 3600, 5, 15 * time.Minute},
		{"response: {throttle_rate: 1/h}", MinThrottleRate, 5, 15 * time.Minute},
		{"response: {throttle_rate: 10000/s}", MaxThrottleRate, 5, 15 * time.Minute},
		{"response: {quarantine_ttl: 2h}", 1, 5, 2 * time.Hour},
		{"response: {quarantine_ttl: 2h, throttle_ttl: 90s}", 1, 5, 90 * time.Second},
		{"response: {throttle_ttl: 90s, quarantine_ttl: 2h}", 1, 5, 90 * time.Second},
	} {
		d, err := Parse([]byte(c.in))
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		r := d.Response
		if r.ThrottleRate != c.rate || r.ThrottleBurst != c.burst || r.ThrottleTTL != c.ttl {
			t.Errorf("%q: rate %v burst %d ttl %s; want %v %d %s", c.in, r.ThrottleRate, r.ThrottleBurst, r.ThrottleTTL, c.rate, c.burst, c.ttl)
		}
		d2, err := Parse(d.Canonical())
		if err != nil || !reflect.DeepEqual(d, d2) {
			t.Errorf("%q: canonical round trip: %v\n%s", c.in, err, d.Canonical())
		}
	}
}

func TestRateFormat(t *testing.T) {
	for in, want := range map[string]string{"1/s": "1/s", "2": "2/s", "30/m": "30/m", "0.5/s": "30/m", "6/m": "6/m",
		"1/h": "1/h", "600/h": "10/m", "90/min": "90/m", "0.7": "42/m", "0.007": "0.007/s"} {
		r, err := ParseRate(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := FormatRate(r); got != want {
			t.Errorf("FormatRate(ParseRate(%q)) = %q, want %q", in, got, want)
		}
		if back, err := ParseRate(FormatRate(r)); err != nil || back != r {
			t.Errorf("%s: %q reads back %v, %v; want %v", in, FormatRate(r), back, err, r)
		}
	}
	for _, in := range []string{"", "/s", "fast", "1/d", "-1/s", "0/s", "NaN", "Inf/s", "1e999/s"} {
		if r, err := ParseRate(in); err == nil {
			t.Errorf("%q accepted as %v", in, r)
		}
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	for name, in := range map[string]string{"full": full, "default": "",
		"disabled": "allow_disabled: true\nmonitoring: {enabled: false}\nthreat_detection: {enabled: false, models: []}\n"} {
		d, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c := d.Canonical()
		d2, err := Parse(c)
		if err != nil {
			t.Fatalf("%s: canonical form does not parse: %v\n%s", name, err, c)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Errorf("%s: round trip changed the document:\n%+v\n%+v", name, d, d2)
		}
		if c2 := d2.Canonical(); string(c2) != string(c) {
			t.Errorf("%s: canonical form not stable:\n%s\n%s", name, c, c2)
		}
	}
}

// TestParseErrors checks every refused shape: the error names the line and key.
func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string // each must appear, in this order
	}{
		{"monitoring disabled", "monitoring:\n  enabled: false\n",
			[]string{"line 2: monitoring.enabled: monitoring is disabled"}},
		{"threat detection disabled", "threat_detection:\n  enabled: false\n",
			[]string{"line 2: threat_detection.enabled: threat detection is disabled"}},
		{"unknown top key", "monitorng:\n  enabled: true\n", []string{"line 1: monitorng: unknown key"}},
		{"unknown nested key", "response:\n  windw: 5m\n", []string{"line 2: response.windw: unknown key"}},
		{"unknown action", "monitoring:\n  policies:\n    - metric: cpu_usage\n      threshold: 80%\n      action: page\n",
			[]string{`line 5: monitoring.policies[0].action: unknown action "page"`}},
		{"unknown metric", "monitoring:\n  policies:\n    - metric: cpu\n      threshold: 80\n      action: alert\n",
			[]string{`line 3: monitoring.policies[0].metric: unknown metric "cpu"`}},
		{"unit mismatch", "monitoring:\n  policies:\n    - metric: cpu_usage\n      threshold: 64MiB\n      action: alert\n",
			[]string{"line 4: monitoring.policies[0].threshold: cpu_usage takes a percent or plain number, not a bytes"}},
		{"percent above 100", "monitoring:\n  policies:\n    - metric: cpu_usage\n      threshold: 180%\n      action: alert\n",
			[]string{"line 4: monitoring.policies[0].threshold: 180% is above 100%"}},
		{"bad threshold", "monitoring:\n  policies:\n    - metric: cpu_usage\n      threshold: lots\n      action: alert\n",
			[]string{`line 4: monitoring.policies[0].threshold: "lots" is not a number`}},
		{"negative threshold", "monitoring:\n  policies:\n    - metric: threads\n      threshold: -3\n      action: alert\n",
			[]string{`line 4: monitoring.policies[0].threshold: "-3" is negative`}},
		{"missing required", "monitoring:\n  policies:\n    - metric: threads\n",
			[]string{"line 3: monitoring.policies[0].action: required", "line 3: monitoring.policies[0].threshold: required"}},
		{"unknown algorithm", "threat_detection:\n  models:\n    - type: anomaly_detection\n      algorithm: magic\n",
			[]string{`line 4: threat_detection.models[0].algorithm: unknown algorithm "magic"`}},
		{"unknown model type", "threat_detection:\n  models:\n    - type: vibes\n      algorithm: ewma\n",
			[]string{`line 3: threat_detection.models[0].type: unknown model type "vibes"`}},
		{"no models", "threat_detection:\n  models: []\n",
			[]string{"line 2: threat_detection.models: threat detection is enabled with no models"}},
		{"zero duration", "monitoring:\n  interval: 0s\n", []string{`line 2: monitoring.interval: must be a positive duration, got "0s"`}},
		{"negative duration", "response:\n  quarantine_ttl: -5m\n", []string{`line 2: response.quarantine_ttl: must be a positive duration, got "-5m"`}},
		{"zero for", "monitoring:\n  policies:\n    - {metric: threads, threshold: 5, for: 0s, action: alert}\n",
			[]string{"line 3: monitoring.policies[0].for: must be a positive duration"}},
		{"bad duration", "response:\n  window: soon\n", []string{`line 2: response.window: want a duration such as 30s, 5m or 1h, got "soon"`}},
		{"revoke quorum zero", "response:\n  revoke_quorum: 0\n", []string{"line 2: response.revoke_quorum: must be in 1..64, got 0"}},
		{"revoke quorum not int", "response:\n  revoke_quorum: two\n", []string{`line 2: response.revoke_quorum: want a whole number, got "two"`}},
		{"share threshold", "threat_detection:\n  share_threshold: 1.5\n", []string{"line 2: threat_detection.share_threshold: must be in (0, 1], got 1.5"}},
		{"escalate_after", "response:\n  escalate_after: 0\n", []string{"line 2: response.escalate_after: must be at least 1, got 0"}},
		{"throttle_rate unit", "response:\n  throttle_rate: 5/d\n", []string{`line 2: response.throttle_rate: "5/d": rate unit "d", want /s, /m or /h`}},
		{"throttle_rate word", "response:\n  throttle_rate: fast\n", []string{`line 2: response.throttle_rate: "fast" is not a rate such as 1/s, 30/m or 600/h`}},
		{"throttle_rate zero", "response:\n  throttle_rate: 0/s\n", []string{`line 2: response.throttle_rate: "0/s" must be positive`}},
		{"throttle_rate list", "response:\n  throttle_rate: [1]\n", []string{"line 2: response.throttle_rate: want a rate such as 1/s, 30/m or 600/h, got a list"}},
		{"throttle_rate too slow", "response:\n  throttle_rate: 1/d\n", []string{"line 2: response.throttle_rate"}},
		{"throttle_rate below 1/h", "response:\n  throttle_rate: 0.5/h\n", []string{"line 2: response.throttle_rate: must be between 1/h and 10000/s, got 0.000138"}},
		{"throttle_rate too fast", "response:\n  throttle_rate: 20000/s\n", []string{"line 2: response.throttle_rate: must be between 1/h and 10000/s, got 20000/s"}},
		{"throttle_burst zero", "response:\n  throttle_burst: 0\n", []string{"line 2: response.throttle_burst: must be in 1..10000, got 0"}},
		{"throttle_burst big", "response:\n  throttle_burst: 10001\n", []string{"line 2: response.throttle_burst: must be in 1..10000, got 10001"}},
		{"throttle_burst not int", "response:\n  throttle_burst: 2.5\n", []string{`line 2: response.throttle_burst: want a whole number, got "2.5"`}},
		{"throttle_ttl zero", "response:\n  throttle_ttl: 0s\n", []string{`line 2: response.throttle_ttl: must be a positive duration, got "0s"`}},
		{"throttle_ttl bad", "response:\n  throttle_ttl: soon\n", []string{`line 2: response.throttle_ttl: want a duration such as 30s, 5m or 1h, got "soon"`}},
		{"ladder order", "response:\n  ladder: [alert, revoke, quarantine]\n",
			[]string{`line 2: response.ladder[2]: "quarantine" is out of order or repeated`}},
		{"ladder unknown", "response:\n  ladder: [alert, page]\n", []string{`line 2: response.ladder[1]: unknown action "page"`}},
		{"ladder empty", "response:\n  ladder: []\n", []string{"line 2: response.ladder: must name at least one action"}},
		{"bool", "monitoring:\n  enabled: yes\n", []string{`line 2: monitoring.enabled: want true or false, got "yes"`}},
		{"repeated key", "response:\n  window: 5m\n  window: 6m\n", []string{"line 3: response.window: repeated key"}},
		{"alias", "monitoring: &m\n  enabled: true\nthreat_detection: *m\n", []string{"line 3: threat_detection: YAML aliases are not allowed"}},
		{"not a mapping", "- a\n- b\n", []string{"line 1: want a mapping, got a list"}},
		{"syntax", "monitoring:\n  enabled: [true\n", []string{"line "}},
		{"two documents", "monitoring: {}\n---\nresponse: {}\n", []string{"line 2: more than one YAML document"}},
		{"duplicate feature", "threat_detection:\n  models:\n    - {type: anomaly_detection, algorithm: ngram, features: [a, a]}\n",
			[]string{`line 3: threat_detection.models[0].features[1]: duplicate feature "a"`}},
		{"all at once", "monitoring:\n  enabled: false\n  interval: 0s\nresponse:\n  revoke_quorum: 0\n  bogus: 1\n",
			[]string{"line 2: monitoring.enabled", "line 3: monitoring.interval", "line 5: response.revoke_quorum", "line 6: response.bogus: unknown key"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Parse([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted: %+v", d)
			}
			if d != nil {
				t.Errorf("returned a document with the error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("not ErrInvalid: %v", err)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("not Errors: %T", err)
			}
			msg, at := err.Error(), 0
			for _, w := range c.want {
				i := strings.Index(msg[at:], w)
				if i < 0 {
					t.Fatalf("error %q lacks %q (in order)", msg, w)
				}
				at += i + len(w)
			}
		})
	}
}

func TestAllowDisabled(t *testing.T) {
	d, err := Parse([]byte("allow_disabled: true\nmonitoring:\n  enabled: false\nthreat_detection:\n  enabled: false\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Monitoring.Enabled || d.ThreatDetection.Enabled {
		t.Errorf("%+v", d)
	}
}

func TestTooLarge(t *testing.T) {
	_, err := Parse(make([]byte, MaxSize+1))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "max") {
		t.Fatalf("%v", err)
	}
}

func TestValidateBuiltDocument(t *testing.T) {
	d := Default()
	d.Response.RevokeQuorum = 0
	d.Response.ThrottleRate, d.Response.ThrottleBurst, d.Response.ThrottleTTL = 0, 0, 0
	d.Monitoring.Policies = append(d.Monitoring.Policies, Rule{Metric: "threads", Threshold: Threshold{5, UnitNone}, For: -time.Second, Action: "nap"})
	err := d.Validate()
	for _, w := range []string{"monitoring.policies[0].for", `unknown action "nap"`, "response.revoke_quorum",
		"response.throttle_rate: must be between 1/h and 10000/s, got 0/s", "response.throttle_burst", "response.throttle_ttl"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate: %v, want %q", err, w)
		}
	}
}

func TestParseThreshold(t *testing.T) {
	for in, want := range map[string]Threshold{
		"80%": {80, UnitPercent}, "0.5": {0.5, UnitNone}, "1KB": {1000, UnitBytes}, "2KiB": {2048, UnitBytes},
		"10B": {10, UnitBytes}, "600/h": {10, UnitPerMinute}, "100/m": {100, UnitPerMinute}, "1/s": {60, UnitPerMinute},
	} {
		got, err := ParseThreshold(in)
		if err != nil || got != want {
			t.Errorf("%s: %+v, %v; want %+v", in, got, err, want)
		}
		back, err := ParseThreshold(got.String())
		if err != nil || back != got {
			t.Errorf("%s: String %q reads back %+v, %v", in, got.String(), back, err)
		}
	}
	for _, in := range []string{"", "%", "x/m", "5/d", "NaN", "Inf", "-1%", "1e999"} {
		if _, err := ParseThreshold(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(full))
	f.Add([]byte("monitoring: {enabled: false}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		d2, err := Parse(d.Canonical())
		if err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("canonical round trip: %v\n%s", err, d.Canonical())
		}
	})
}

// TestRevokeQuorumNamed: only a document that names revoke_quorum sets it (a node then uses it
// as a floor above the registry's quorum); Canonical keeps the difference.
func TestRevokeQuorumNamed(t *testing.T) {
	for _, c := range []struct {
		in  string
		set bool
		q   int
	}{
		{"", false, 2},
		{"response: {dry_run: true}", false, 2},
		{"response: {revoke_quorum: 3}", true, 3},
		{"response: {revoke_quorum: 2}", true, 2},
	} {
		d, err := Parse([]byte(c.in))
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if d.Response.RevokeQuorumSet != c.set || d.Response.RevokeQuorum != c.q {
			t.Errorf("%q: set %v quorum %d, want %v %d", c.in, d.Response.RevokeQuorumSet, d.Response.RevokeQuorum, c.set, c.q)
		}
		back, err := Parse(d.Canonical())
		if err != nil || back.Response.RevokeQuorumSet != c.set || back.Response.RevokeQuorum != c.q {
			t.Errorf("%q: canonical round trip: %v %+v", c.in, err, back.Response)
		}
	}
}
