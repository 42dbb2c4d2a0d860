package config

import (
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the parser: it must not panic, every problem must be
// complete, and a file without errors must give a Config that passes Validate.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		DefaultFile,
		"",
		"auth:\n  method: basic\n  username: a\n  password: b\n",
		"monitoring:\n  enabled: false\n  allow_disabled: true\n",
		"listen:\n  libp2p: &a [/ip4/0.0.0.0/tcp/0]\nadvertise: *a\n",
		"join: [/ip4/10.0.0.5/tcp/7400/p2p/12D3KooWGRUVh7Wq6gNqBKJDNHLmGZL4FQcUqXz1vRfrYWtqKJYy]\n",
		"a: &a [*a]\n",
		"node: {name: [x, {y: z}]}\n---\n",
		"raft:\n  snapshot_threshold: 0x10\n  heartbeat_timeout: 1h\n",
		"\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, ps := Parse("fuzz.yaml", data)
		for _, p := range ps {
			if p.File != "fuzz.yaml" || p.Message == "" || p.Err == nil || p.Line < 0 ||
				(p.Severity != SeverityError && p.Severity != SeverityWarning) {
				t.Fatalf("incomplete problem %#v", p)
			}
		}
		if !HasErrors(ps) {
			if err := c.Validate(); err != nil {
				t.Fatalf("no lint error but Validate = %v", err)
			}
		}
	})
}

// TestFuzzSeedsBounded checks the size cap independent of the fuzzer.
func TestFuzzSeedsBounded(t *testing.T) {
	_, ps := Parse("x.yaml", make([]byte, MaxFileSize+1))
	if len(ps) != 1 || !errors.Is(ps[0].Err, ErrTooLarge) {
		t.Fatalf("oversized input: %v", ps)
	}
}

// BenchmarkParseDefault measures parsing the default file (the common case at node start).
func BenchmarkParseDefault(b *testing.B) {
	data := []byte(DefaultFile)
	b.ReportAllocs()
	for b.Loop() {
		if _, ps := Parse("node.yaml", data); len(ps) != 0 {
			b.Fatal(ps)
		}
	}
}
