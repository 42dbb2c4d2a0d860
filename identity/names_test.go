package identity

import (
	"errors"
	"strings"
	"testing"
)

func TestClusterID(t *testing.T) {
	c, err := NewClusterID(seeded(1))
	if err != nil || c.IsZero() {
		t.Fatalf("NewClusterID: %v", err)
	}
	cases := []struct {
		name string
		in   string
		ok   bool
	}{
		{"round trip", c.String(), true},
		{"uppercase", strings.ToUpper(c.String()), false},
		{"short", c.String()[:30], false},
		{"long", c.String() + "00", false},
		{"not hex", strings.Repeat("zz", 16), false},
		{"empty", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseClusterID(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if tc.ok && got != c {
				t.Fatal("mismatch")
			}
			if !tc.ok {
				wantErr(t, err, ErrMalformed)
			}
		})
	}
	if _, err := NewClusterID(strings.NewReader("short")); err == nil {
		t.Fatal("short random source accepted")
	}
}

func TestValidateName(t *testing.T) {
	cases := []struct {
		name string
		in   string
		ok   bool
	}{
		{"simple", "agent-1", true},
		{"dots underscores", "a.b_c-d", true},
		{"digit first", "9lives", true},
		{"max length", "a" + strings.Repeat("b", 62), true},
		{"too long", "a" + strings.Repeat("b", 63), false},
		{"empty", "", false},
		{"uppercase", "Agent", false},
		{"leading dash", "-a", false},
		{"leading dot", ".a", false},
		{"slash", "a/b", false},
		{"space", "a b", false},
		{"unicode", "agént", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateName(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("ValidateName(%q) = %v", tc.in, err)
			}
			if !tc.ok {
				wantErr(t, err, ErrInvalid)
				if !strings.Contains(err.Error(), "name") {
					t.Fatalf("message does not name the field: %v", err)
				}
			}
		})
	}
}

func TestSPIFFE(t *testing.T) {
	id, err := NewAgentSPIFFEID("example.org", "planner")
	if err != nil {
		t.Fatal(err)
	}
	if id.String() != "spiffe://example.org/agent/planner" {
		t.Fatalf("got %s", id)
	}
	if n, ok := id.AgentName(); !ok || n != "planner" {
		t.Fatal("AgentName")
	}
	if _, err := NewAgentSPIFFEID("Example.org", "planner"); err == nil {
		t.Fatal("uppercase trust domain accepted")
	}
	if _, err := NewAgentSPIFFEID("example.org", "Bad"); err == nil {
		t.Fatal("bad agent name accepted")
	}
	cases := []struct {
		name string
		in   string
		ok   bool
	}{
		{"agent", "spiffe://example.org/agent/planner", true},
		{"trust domain only", "spiffe://example.org", true},
		{"nested path", "spiffe://td/ns/prod/sa/Web_1", true},
		{"wrong scheme", "https://example.org/agent/x", false},
		{"uppercase scheme", "SPIFFE://example.org/agent/x", false},
		{"empty td", "spiffe:///agent/x", false},
		{"uppercase td", "spiffe://Example.org/a", false},
		{"port", "spiffe://example.org:8080/a", false},
		{"userinfo", "spiffe://u@example.org/a", false},
		{"trailing slash", "spiffe://example.org/agent/", false},
		{"empty segment", "spiffe://example.org//a", false},
		{"dot segment", "spiffe://example.org/./a", false},
		{"dotdot segment", "spiffe://example.org/../a", false},
		{"query", "spiffe://example.org/a?x=1", false},
		{"fragment", "spiffe://example.org/a#f", false},
		{"percent", "spiffe://example.org/a%20b", false},
		{"too long", "spiffe://example.org/" + strings.Repeat("a", MaxSPIFFELen), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSPIFFEID(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("ParseSPIFFEID(%q) = %v", tc.in, err)
			}
			if tc.ok && got.String() != tc.in {
				t.Fatalf("round trip %q → %q", tc.in, got)
			}
		})
	}
}

func TestErrorCodes(t *testing.T) {
	if CodeOf(nil) != "" || CodeOf(errors.New("x")) != "unknown" {
		t.Fatal("nil/foreign codes")
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if seen[c.code] {
			t.Fatalf("duplicate code %s", c.code)
		}
		seen[c.code] = true
		err := ErrorForCode(c.code, "detail text")
		if !errors.Is(err, c.err) || CodeOf(err) != c.code || !strings.Contains(err.Error(), "detail text") {
			t.Fatalf("code %s: %v → %s", c.code, err, CodeOf(err))
		}
		if CodeOf(errf(c.err, "wrapped")) != c.code {
			t.Fatalf("CodeOf(errf(%s))", c.code)
		}
	}
	if len(codes) != 21 {
		t.Fatalf("%d codes, want one per sentinel (21)", len(codes))
	}
	// Rebuilding the text of an error (as a node does with a forwarded rejection) keeps it as it
	// was: neither the prefix nor the sentinel's text is repeated, however often it crosses.
	orig := errf(ErrVersionConflict, "version: got 5, want 2")
	again := ErrorForCode(CodeOf(orig), ErrorForCode(CodeOf(orig), orig.Error()).Error())
	if again.Error() != orig.Error() || !errors.Is(again, ErrVersionConflict) {
		t.Fatalf("rebuilt %q, want %q", again, orig)
	}
	if big := ErrorForCode("too_large", tooLargef("x").Error()); big.Error() != tooLargef("x").Error() ||
		!errors.Is(big, ErrTooLarge) || !errors.Is(big, ErrMalformed) {
		t.Fatalf("rebuilt too large: %q", big)
	}
	if CodeOf(ErrorForCode("nope", "d")) != "unknown" {
		t.Fatal("unknown code")
	}
	if CodeOf(tooLargef("x")) != "too_large" || !errors.Is(tooLargef("x"), ErrMalformed) {
		t.Fatal("too large wraps both")
	}
}
