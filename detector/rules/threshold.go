package rules

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Kind is what a threshold's number measures.
type Kind uint8

const (
	Plain    Kind = iota // a bare number: "0.5", "100"
	Percent              // "80%": Value is in percent points (80), compared with values in percent
	Bytes                // "64MiB", "10KB": Value is in bytes
	Duration             // "500ms", "2s": Value is in seconds
	Rate                 // "100/m", "64MiB/s": Value counts (or bytes) per Threshold.Per
)

func (k Kind) String() string {
	switch k {
	case Plain:
		return "plain"
	case Percent:
		return "percent"
	case Bytes:
		return "bytes"
	case Duration:
		return "duration"
	case Rate:
		return "rate"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Threshold is a parsed policy threshold. Build it with ParseThreshold.
type Threshold struct {
	// Value is the number in the base unit of Kind (percent points, bytes, seconds, or a
	// count per Per for rates).
	Value float64
	Kind  Kind
	// Unit is, for a Rate, the kind of what is counted (Plain or Bytes).
	Unit Kind
	// Per is, for a Rate, the window the count is over (time.Second, time.Minute, time.Hour).
	Per time.Duration
	// Text is the string it was parsed from, for evidence and errors.
	Text string
}

func (t Threshold) String() string { return t.Text }

// ErrThreshold wraps every threshold parse error.
var ErrThreshold = errors.New("invalid threshold")

var byteUnits = []struct {
	suffix string
	mult   float64
}{ // longest first so "KiB" is not read as "B"
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"b", 1},
}

var rateUnits = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "second": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute,
	"h": time.Hour, "hour": time.Hour,
}

// ParseThreshold parses the threshold strings a policy uses: a plain number ("100", "0.5",
// "-3"), a percentage ("80%"), a size ("64MiB", "10KB", "512B"; KiB/MiB/GiB/TiB are powers of
// 1024, KB/MB/GB/TB of 1000; case-insensitive), a duration ("500ms", "2s", "1m"), or a rate
// ("100/m", "5/s", "64MiB/h"; per s|sec|second, m|min|minute, h|hour). Only plain numbers may
// be negative. The error names the string and what is wrong with it.
func ParseThreshold(s string) (Threshold, error) {
	text := strings.TrimSpace(s)
	fail := func(format string, args ...any) (Threshold, error) {
		return Threshold{}, fmt.Errorf("%w %q: %s", ErrThreshold, s, fmt.Sprintf(format, args...))
	}
	if text == "" {
		return fail("empty; want a number such as 80%%, 100, 64MiB, 500ms or 100/m")
	}
	if num, per, ok := strings.Cut(text, "/"); ok {
		p, known := rateUnits[strings.ToLower(strings.TrimSpace(per))]
		if !known {
			return fail("rate unit %q is not one of s, m, h (or sec, min, hour)", strings.TrimSpace(per))
		}
		inner, err := ParseThreshold(num)
		if err != nil {
			return fail("the count before '/': %v", errors.Unwrap(err))
		}
		if inner.Kind != Plain && inner.Kind != Bytes {
			return fail("a rate counts events or bytes, not a %s", inner.Kind)
		}
		if inner.Value < 0 {
			return fail("a rate cannot be negative")
		}
		return Threshold{Value: inner.Value, Kind: Rate, Unit: inner.Kind, Per: p, Text: text}, nil
	}
	number := func(str string) (float64, error) {
		v, err := strconv.ParseFloat(strings.TrimSpace(str), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("%q is not a finite number", strings.TrimSpace(str))
		}
		return v, nil
	}
	if num, ok := strings.CutSuffix(text, "%"); ok {
		v, err := number(num)
		if err != nil {
			return fail("%v", err)
		}
		if v < 0 {
			return fail("a percentage cannot be negative")
		}
		return Threshold{Value: v, Kind: Percent, Text: text}, nil
	}
	if v, err := number(text); err == nil {
		return Threshold{Value: v, Kind: Plain, Text: text}, nil
	}
	lower := strings.ToLower(text)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(lower, u.suffix); ok && num != "" {
			v, err := number(num)
			if err != nil {
				return fail("size %v", err)
			}
			if v < 0 {
				return fail("a size cannot be negative")
			}
			return Threshold{Value: v * u.mult, Kind: Bytes, Text: text}, nil
		}
	}
	if d, err := time.ParseDuration(text); err == nil {
		if d < 0 {
			return fail("a duration cannot be negative")
		}
		return Threshold{Value: d.Seconds(), Kind: Duration, Text: text}, nil
	}
	return fail("not a number, percentage (80%%), size (64MiB), duration (500ms) or rate (100/m)")
}

// Action is what a violated rule asks the node to do.
type Action uint8

const (
	Alert      Action = iota // record and gossip the signal
	Throttle                 // slow the agent down
	Quarantine               // cut the agent off pending review
	Revoke                   // revoke the agent's identity
)

func (a Action) String() string {
	switch a {
	case Alert:
		return "alert"
	case Throttle:
		return "throttle"
	case Quarantine:
		return "quarantine"
	case Revoke:
		return "revoke"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// ParseAction parses alert|throttle|quarantine|revoke.
func ParseAction(s string) (Action, error) {
	for a := Alert; a <= Revoke; a++ {
		if s == a.String() {
			return a, nil
		}
	}
	return 0, fmt.Errorf("rules: action %q is not one of alert, throttle, quarantine, revoke", s)
}
