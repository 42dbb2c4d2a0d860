package monitor

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzParseProc: the /proc parsers never panic, and what parseStat accepts is self-consistent.
func FuzzParseProc(f *testing.F) {
	f.Add([]byte("4242 (my (weird) agent) S 1 4242 4242 0 -1 4194304 1000 0 0 0 250 50 3 1 20 0 7 0 123456 104857600 2560\n"))
	f.Add([]byte("Inter-|\n face |\n  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"))
	f.Add([]byte("25600 2560 800 5 0 1200 0\n"))
	f.Add([]byte(") ( 1 2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if st, err := parseStat(b); err == nil {
			if !strings.Contains(string(b), "("+st.Comm+")") || st.State == 0 {
				t.Fatalf("accepted %q as %+v", b, st)
			}
		}
		parseStatm(b)
		parseNetDev(b)
		parseAuxvClkTck(b)
	})
}

// FuzzAPIRequests: any body sent to the write endpoints gets a JSON answer with a known status,
// and only a 200 reaches the backend.
func FuzzAPIRequests(f *testing.F) {
	for _, s := range []string{
		`{"to":"bob","capability":"chat","body":"hi"}`,
		`{"to":"bob","capability":"chat","body_base64":"AP8="}`,
		`{"kind":"tool_call","name":"search","value":0.2,"attrs":{"q":"x"}}`,
		`{"events":[{"kind":"metric","name":"m","value":1},{"kind":"error","name":"e","at":"2026-01-01T00:00:00Z"}]}`,
		`{"events":[],"kind":"x"}`, `[]`, `null`, `{"to":null}`, `"x"`,
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	mesh := newTestMesh(f)
	alice := mesh.add(f, "alice", "send:bob")
	bob := mesh.add(f, "bob")
	cfg := DefaultConfig()
	cfg.MaxBody = 4096
	srvA, err := New(alice, cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srvA.Close() })
	srvB, err := New(bob, cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srvB.Close() })
	f.Fuzz(func(t *testing.T, body string, toMessages bool) {
		path := "/v1/events"
		if toMessages {
			path = "/v1/messages"
		}
		before := len(alice.snapshot())
		alice.mu.Lock()
		sentBefore := len(alice.sent)
		alice.mu.Unlock()
		w := httptest.NewRecorder()
		srvA.ServeHTTP(w, httptest.NewRequest("POST", path, strings.NewReader(body)))
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %q: answer %q is not a JSON object: %v", path, body, w.Body.String(), err)
		}
		switch w.Code {
		case http.StatusOK, http.StatusForbidden:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if e, ok := out["error"].(map[string]any); !ok || e["message"] == "" {
				t.Fatalf("%d without an error message: %v", w.Code, out)
			}
			alice.mu.Lock()
			sent := len(alice.sent)
			alice.mu.Unlock()
			if len(alice.snapshot()) != before || sent != sentBefore {
				t.Fatalf("a %d request %q changed the backend", w.Code, body)
			}
		default:
			t.Fatalf("%s %q: status %d: %s", path, body, w.Code, w.Body.String())
		}
		srvB.inbox.take(1 << 20) // keep bob's queue from growing
	})
}
