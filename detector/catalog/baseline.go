package catalog

import (
	"fmt"
	"reflect"
	"sort"
	"time"

	"github.com/vigil-mesh/vigil/detector/engine"
)

// SequenceEngineParams are the params of a sequence model that configure the engine around it
// (its baseline period, sessions and fine-tuning) rather than the model itself:
//
//	baseline_sessions      engine.BaselineConfig.Sessions (200; 0 = no baseline)
//	baseline_min_sessions  engine.BaselineConfig.MinSessions (20)
//	baseline_duration      engine.BaselineConfig.Duration (24h)
//	baseline_actions       engine.BaselineConfig.MaxActions (100000)
//	session_gap            engine.Config.SessionGap (5m)
//	tune_interval          engine.Config.TuneInterval (0 = off)
var SequenceEngineParams = []string{"baseline_sessions", "baseline_min_sessions", "baseline_duration", "baseline_actions", "session_gap", "tune_interval"}

// SplitSequenceParams sets the SequenceEngineParams found in params on cfg and returns the
// other params, for the model (NewSequence). Keys match as in Decode (case, '_' and '-' do not
// matter). A bad value is an error that begins with the key as written
// ("baseline_sessions: -1 is not in 0..1000000"), and leaves cfg unchanged.
func SplitSequenceParams(params map[string]any, cfg *engine.Config) (map[string]any, error) {
	rest := make(map[string]any, len(params))
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	c := *cfg
	for _, k := range keys {
		v := params[k]
		var (
			err error
			bad string
		)
		switch normKey(k) {
		case "baselinesessions":
			err = setInt(&c.Baseline.Sessions, v, k)
			if err == nil && (c.Baseline.Sessions < 0 || c.Baseline.Sessions > 1_000_000) {
				bad = "in 0..1000000 (0 = no baseline)"
			}
		case "baselineminsessions":
			err = setInt(&c.Baseline.MinSessions, v, k)
			if err == nil && (c.Baseline.MinSessions < 1 || c.Baseline.MinSessions > 1_000_000) {
				bad = "in 1..1000000"
			}
		case "baselineduration":
			err = setDuration(&c.Baseline.Duration, v, k)
			if err == nil && c.Baseline.Duration <= 0 {
				bad = "a positive duration such as 24h"
			}
		case "baselineactions":
			err = setInt(&c.Baseline.MaxActions, v, k)
			if err == nil && (c.Baseline.MaxActions < 1 || c.Baseline.MaxActions > 10_000_000) {
				bad = "in 1..10000000"
			}
		case "sessiongap":
			err = setDuration(&c.SessionGap, v, k)
			if err == nil && c.SessionGap <= 0 {
				bad = "a positive duration such as 5m"
			}
		case "tuneinterval":
			err = setDuration(&c.TuneInterval, v, k)
			if err == nil && c.TuneInterval < 0 {
				bad = "a duration ≥ 0 (0 = off)"
			}
		default:
			rest[k] = v
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		if bad != "" {
			return nil, fmt.Errorf("%s: %v is not %s", k, v, bad)
		}
	}
	*cfg = c
	return rest, nil
}

func setInt(dst *int, v any, key string) error {
	return setField(reflect.ValueOf(dst).Elem(), v, key)
}

func setDuration(dst *time.Duration, v any, key string) error {
	return setField(reflect.ValueOf(dst).Elem(), v, key)
}

// setField is set without the key in its message (the caller puts the key first).
func setField(f reflect.Value, v any, key string) error {
	if err := set(f, v, key); err != nil {
		return fmt.Errorf("%v is not %s", v, want(f))
	}
	return nil
}

func want(f reflect.Value) string {
	if f.Type() == durationType {
		return "a duration such as 30s"
	}
	return "an integer"
}
