package monitor

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/agent"
)

func errOf(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %v", m)
	}
	return e
}

func TestRegistrationStatusHealthz(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice", "send:bob")
	s := startSidecar(t, a, "", nil)
	code, reg := s.do(t, "GET", "/v1/registration", "")
	if code != 200 || reg["name"] != "alice" || reg["id"] != a.ID().String() || reg["spiffe_id"] != "spiffe://test.local/agent/alice" ||
		reg["status"] != "active" || reg["node"] != mesh.node.String() || reg["expires_at"] == nil {
		t.Fatalf("registration: %d %v", code, reg)
	}
	if caps := reg["capabilities"].([]any); len(caps) != 1 || caps[0] != "send:bob" {
		t.Fatalf("capabilities %v", caps)
	}
	code, st := s.do(t, "GET", "/v1/status", "")
	if code != 200 || st["state"] != "connected" || st["node"] != mesh.node.String() {
		t.Fatalf("status: %d %v", code, st)
	}
	if code, h := s.do(t, "GET", "/healthz", ""); code != 200 || h["ok"] != true {
		t.Fatalf("healthz: %d %v", code, h)
	}
}

func TestSendReceiptAndRefusals(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice", "send:bob", "send:carol")
	b := mesh.add(t, "bob")
	sa := startSidecar(t, a, "", nil)
	sb := startSidecar(t, b, "", nil) // bob's sidecar installs bob's handler
	code, rc := sa.do(t, "POST", "/v1/messages", `{"to":"bob","capability":"chat","body":"hello"}`)
	if code != 200 || rc["id"] == "" || rc["latency_ms"] == nil {
		t.Fatalf("send: %d %v", code, rc)
	}
	code, rc = sa.do(t, "POST", "/v1/messages", `{"to":"bob","capability":"chat","body_base64":"AP8="}`)
	if code != 200 {
		t.Fatalf("send base64: %d %v", code, rc)
	}
	code, got := sb.do(t, "GET", "/v1/messages?wait=1s", "")
	msgs := got["messages"].([]any)
	if code != 200 || len(msgs) != 2 {
		t.Fatalf("poll: %d %v", code, got)
	}
	m0, m1 := msgs[0].(map[string]any), msgs[1].(map[string]any)
	if m0["from"] != "alice" || m0["from_id"] != a.ID().String() || m0["to"] != "bob" || m0["capability"] != "chat" || m0["body"] != "hello" || m0["body_base64"] != nil {
		t.Fatalf("message 0: %v", m0)
	}
	if m1["body_base64"] != "AP8=" || m1["body"] != nil { // not UTF-8: base64
		t.Fatalf("message 1: %v", m1)
	}

	for _, tc := range []struct {
		name, body      string
		code, rule, hop string
	}{
		{"no capability", `{"to":"dave","capability":"chat","body":"x"}`, "no_capability", "capability send:dave not held by alice", "sender-node"},
		{"unknown destination", `{"to":"carol","capability":"chat","body":"x"}`, "unknown_destination", "no agent named carol", "sender-node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := sa.do(t, "POST", "/v1/messages", tc.body)
			e := errOf(t, out)
			if code != 403 || e["code"] != tc.code || e["rule"] != tc.rule || e["hop"] != tc.hop || e["message"] == "" {
				t.Fatalf("%d %v", code, out)
			}
		})
	}
	b.cut("revoked by operator")
	code, out := sa.do(t, "POST", "/v1/messages", `{"to":"bob","capability":"chat","body":"x"}`)
	if e := errOf(t, out); code != 403 || e["code"] != "destination_inactive" || e["hop"] != "receiver-node" {
		t.Fatalf("to a revoked agent: %d %v", code, out)
	}
}

// TestSendThrottled: a send the node refuses as throttled is 429 with the node's code, rule and
// hop (not 403: the agent is rate limited, not denied), and the agent stays connected.
func TestSendThrottled(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice", "send:bob")
	b := mesh.add(t, "bob")
	sa := startSidecar(t, a, "", nil)
	startSidecar(t, b, "", nil)
	rule := "response: throttled at 1 msg/s until 2026-03-01T12:15:00Z"
	a.mu.Lock()
	a.throttle = rule
	a.mu.Unlock()
	code, out := sa.do(t, "POST", "/v1/messages", `{"to":"bob","capability":"chat","body":"x"}`)
	e := errOf(t, out)
	if code != 429 || e["code"] != "throttled" || e["rule"] != rule || e["hop"] != "sender-node" ||
		!strings.Contains(e["message"].(string), "next send is allowed in 1s") {
		t.Fatalf("throttled send: %d %v", code, out)
	}
	if code, st := sa.do(t, "GET", "/v1/status", ""); code != 200 || st["state"] != "connected" {
		t.Fatalf("status while throttled: %d %v", code, st)
	}
	a.mu.Lock()
	a.throttle = ""
	a.mu.Unlock()
	if code, out := sa.do(t, "POST", "/v1/messages", `{"to":"bob","capability":"chat","body":"x"}`); code != 200 {
		t.Fatalf("after the throttle: %d %v", code, out)
	}
}

func TestBadRequests(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice", "send:*")
	s := startSidecar(t, a, "", func(c *Config) { c.MaxBody = 4096; c.MaxEvents = 3 })
	big := strings.Repeat("x", 5000)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code, field, msg         string
	}{
		{"unknown field", "POST", "/v1/messages", `{"to":"b","capability":"c","bogus":1}`, 400, "bad_request", "bogus", `unknown field "bogus"`},
		{"wrong type", "POST", "/v1/messages", `{"to":5,"capability":"c"}`, 400, "bad_request", "to", "want a string"},
		{"missing to", "POST", "/v1/messages", `{"capability":"c","body":"x"}`, 400, "bad_request", "to", `missing "to"`},
		{"missing capability", "POST", "/v1/messages", `{"to":"b"}`, 400, "bad_request", "capability", `missing "capability"`},
		{"both bodies", "POST", "/v1/messages", `{"to":"b","capability":"c","body":"x","body_base64":"eA=="}`, 400, "bad_request", "body_base64", "not both"},
		{"bad base64", "POST", "/v1/messages", `{"to":"b","capability":"c","body_base64":"%%%"}`, 400, "bad_request", "body_base64", "not standard base64"},
		{"malformed", "POST", "/v1/messages", `{"to":`, 400, "bad_request", "", "malformed JSON"},
		{"empty", "POST", "/v1/messages", ``, 400, "bad_request", "", "empty body"},
		{"trailing", "POST", "/v1/messages", `{"to":"b","capability":"c"} {}`, 400, "bad_request", "", "trailing data"},
		{"too large", "POST", "/v1/messages", `{"to":"b","capability":"c","body":"` + big + `"}`, 413, "body_too_large", "", "over 4096 bytes"},
		{"unknown endpoint", "GET", "/v1/nope", "", 404, "not_found", "", "no endpoint /v1/nope"},
		{"wrong method", "DELETE", "/v1/messages", "", 405, "method_not_allowed", "", "allowed methods: GET, POST"},
		{"bad wait", "GET", "/v1/messages?wait=soon", "", 400, "bad_request", "wait", "duration"},
		{"bad max", "GET", "/v1/messages?max=0", "", 400, "bad_request", "max", "1 to 10000"},
		{"unknown query", "GET", "/v1/messages?limit=3", "", 400, "bad_request", "limit", "unknown query parameter"},
		{"event no kind", "POST", "/v1/events", `{"name":"x"}`, 400, "bad_request", "kind", "missing"},
		{"event bad kind", "POST", "/v1/events", `{"kind":"weird","name":"x"}`, 400, "bad_request", "kind", "not one of"},
		{"event unknown field", "POST", "/v1/events", `{"kind":"metric","name":"x","value":1,"extra":2}`, 400, "bad_request", "extra", "unknown field"},
		{"metric no value", "POST", "/v1/events", `{"kind":"metric","name":"x"}`, 400, "bad_request", "value", "needs a value"},
		{"value not number", "POST", "/v1/events", `{"kind":"metric","name":"x","value":"1"}`, 400, "bad_request", "value", "want a number"},
		{"batch item", "POST", "/v1/events", `{"events":[{"kind":"custom","name":"a"},{"kind":"custom"}]}`, 400, "bad_request", "events[1].name", "events[1].name: missing"},
		{"batch item type", "POST", "/v1/events", `{"events":[{"kind":"custom","name":"a","attrs":{"k":1}}]}`, 400, "bad_request", "events.attrs", "got a JSON number, want a string"},
		{"batch too big", "POST", "/v1/events", `{"events":[{"kind":"custom","name":"a"},{"kind":"custom","name":"a"},{"kind":"custom","name":"a"},{"kind":"custom","name":"a"}]}`, 400, "bad_request", "events", "at most 3"},
		{"batch empty", "POST", "/v1/events", `{"events":[]}`, 400, "bad_request", "events", "empty batch"},
		{"batch extra key", "POST", "/v1/events", `{"events":[],"x":1}`, 400, "bad_request", "x", "unknown field"},
		{"batch and event", "POST", "/v1/events", `{"events":[{"kind":"custom","name":"a"}],"kind":"custom"}`, 400, "bad_request", "events", "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := s.do(t, tc.method, tc.path, tc.body)
			e := errOf(t, out)
			f, _ := e["field"].(string)
			if code != tc.status || e["code"] != tc.code || f != tc.field || !strings.Contains(e["message"].(string), tc.msg) {
				t.Fatalf("got %d %v; want %d code %q field %q message containing %q", code, e, tc.status, tc.code, tc.field, tc.msg)
			}
		})
	}
	if got := a.snapshot(); len(got) != 0 {
		t.Fatalf("a bad request changed something: %d events reported", len(got))
	}
	a.mu.Lock()
	sent := len(a.sent)
	a.mu.Unlock()
	if sent != 0 {
		t.Fatalf("a bad request sent %d messages", sent)
	}
}

func TestEvents(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice")
	s := startSidecar(t, a, "", nil)
	code, out := s.do(t, "POST", "/v1/events", `{"kind":"tool_call","name":"search","value":0.2,"attrs":{"q":"x"}}`)
	if code != 200 || out["accepted"] != float64(1) {
		t.Fatalf("one event: %d %v", code, out)
	}
	code, out = s.do(t, "POST", "/v1/events", `{"events":[{"kind":"metric","name":"tokens","value":120},{"kind":"error","name":"timeout","at":"2026-01-02T03:04:05Z"}]}`)
	if code != 200 || out["accepted"] != float64(2) {
		t.Fatalf("batch: %d %v", code, out)
	}
	evs := a.snapshot()
	if len(evs) != 3 {
		t.Fatalf("reported %d events, want 3", len(evs))
	}
	if e := evs[0]; e.Kind != "tool_call" || e.Name != "search" || e.Value != 0.2 || e.Attrs["q"] != "x" {
		t.Fatalf("event 0: %+v", e)
	}
	if e := evs[1]; e.Kind != "metric" || e.Name != "tokens" || e.Value != 120 {
		t.Fatalf("event 1: %+v", e)
	}
	if e := evs[2]; e.Kind != "error" || !e.At.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("event 2: %+v", e)
	}
}

func TestLongPollWaitsAndQueueDropsOldest(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice", "send:bob")
	b := mesh.add(t, "bob")
	sb := startSidecar(t, b, "", func(c *Config) { c.QueueSize = 3 })
	// An empty poll with wait returns after the wait, empty.
	start := time.Now()
	code, out := sb.do(t, "GET", "/v1/messages?wait=200ms", "")
	if code != 200 || len(out["messages"].([]any)) != 0 || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("empty poll: %d %v after %s", code, out, time.Since(start))
	}
	// A waiting poll returns as soon as a message arrives.
	go func() {
		time.Sleep(100 * time.Millisecond)
		a.Send(t.Context(), "bob", "chat", []byte("late"))
	}()
	code, out = sb.do(t, "GET", "/v1/messages?wait=20s", "")
	if ms := out["messages"].([]any); code != 200 || len(ms) != 1 || ms[0].(map[string]any)["body"] != "late" {
		t.Fatalf("waiting poll: %d %v", code, out)
	}
	// Five messages into a queue of three: the two oldest are dropped and counted once.
	for i := range 5 {
		if _, err := a.Send(t.Context(), "bob", "chat", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, st := sb.do(t, "GET", "/v1/status", ""); st["queued"] != float64(3) {
		t.Fatalf("status queued = %v, want 3", st["queued"])
	}
	code, out = sb.do(t, "GET", "/v1/messages?max=2", "")
	ms := out["messages"].([]any)
	if code != 200 || len(ms) != 2 || ms[0].(map[string]any)["body"] != "2" || ms[1].(map[string]any)["body"] != "3" || out["dropped"] != float64(2) {
		t.Fatalf("after overflow: %d %v", code, out)
	}
	code, out = sb.do(t, "GET", "/v1/messages", "")
	ms = out["messages"].([]any)
	if len(ms) != 1 || ms[0].(map[string]any)["body"] != "4" || out["dropped"] != float64(0) {
		t.Fatalf("rest: %d %v", code, out)
	}
}

func TestStreamAndCutOff(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice", "send:bob")
	b := mesh.add(t, "bob", "send:alice")
	sb := startSidecar(t, b, "", func(c *Config) { c.Heartbeat = 50 * time.Millisecond })
	st := sb.stream(t)
	if name, data := st.next(t, 5*time.Second); name != "status" || data["state"] != "connected" {
		t.Fatalf("first event %s %v", name, data)
	}
	if _, err := a.Send(t.Context(), "bob", "chat", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if name, data := st.next(t, 5*time.Second); name != "message" || data["body"] != "one" || data["from"] != "alice" {
		t.Fatalf("message event %s %v", name, data)
	}
	b.cut("revoked: operator op-1 revoked bob")
	if name, data := st.next(t, 5*time.Second); name != "cut_off" || data["state"] != "cut_off" || data["reason"] != "revoked: operator op-1 revoked bob" {
		t.Fatalf("cut-off event %s %v", name, data)
	}
	code, out := sb.do(t, "GET", "/v1/status", "")
	if code != 200 || out["state"] != "cut_off" || out["reason"] != "revoked: operator op-1 revoked bob" {
		t.Fatalf("status after cut-off: %d %v", code, out)
	}
	code, out = sb.do(t, "POST", "/v1/messages", `{"to":"alice","capability":"chat","body":"x"}`)
	if e := errOf(t, out); code != 403 || e["code"] != "cut_off" || !strings.Contains(e["message"].(string), "revoked: operator op-1 revoked bob") {
		t.Fatalf("send after cut-off: %d %v", code, out)
	}
	b.mu.Lock()
	n := len(b.sent)
	b.mu.Unlock()
	if n != 0 {
		t.Fatal("a send went to the backend after the cut-off")
	}
}

func TestParseListen(t *testing.T) {
	for _, tc := range []struct{ in, network, addr, err string }{
		{"unix:/run/x.sock", "unix", "/run/x.sock", ""},
		{"unix:///run/x.sock", "unix", "/run/x.sock", ""},
		{"unix:rel.sock", "unix", "rel.sock", ""},
		{"127.0.0.1:0", "tcp", "127.0.0.1:0", ""},
		{"[::1]:8080", "tcp", "[::1]:8080", ""},
		{"localhost:9", "tcp", "127.0.0.1:9", ""},
		{"unix:", "", "", "empty socket path"},
		{"0.0.0.0:80", "", "", "not a loopback address"},
		{"10.1.2.3:80", "", "", "not a loopback address"},
		{"example.com:80", "", "", "not a loopback address"},
		{":8080", "", "", "not a loopback address"},
		{"127.0.0.1", "", "", "want unix:/path or 127.0.0.1:PORT"},
		{"127.0.0.1:http", "", "", "is not a number"},
	} {
		n, a, err := ParseListen(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseListen(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || n != tc.network || a != tc.addr {
			t.Errorf("ParseListen(%q) = %q, %q, %v", tc.in, n, a, err)
		}
	}
}

func TestUnixSocketModeAndStaleSocket(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice")
	dir := shortTempDir(t)
	path := filepath.Join(dir, "m.sock")
	// A stale socket (no listener) is replaced.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	s := startSidecar(t, a, "unix:"+path, nil)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if s.srv.URL() != "unix://"+path {
		t.Fatalf("URL %q", s.srv.URL())
	}
	if code, _ := s.do(t, "GET", "/healthz", ""); code != 200 {
		t.Fatal(code)
	}
	// A live socket is not taken over.
	srv2, _ := New(a, Config{Listen: "unix:" + path, MaxBody: 1 << 20, QueueSize: 1, MaxWait: time.Second, SendTimeout: time.Second, MaxEvents: 1, Heartbeat: time.Second})
	if err := srv2.Listen(); err == nil || !strings.Contains(err.Error(), "another process is listening") {
		t.Fatalf("second listener: %v", err)
	}
	srv2.Close()
	// A regular file is not removed.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep"), 0o644)
	srv3, _ := New(a, Config{Listen: "unix:" + file, MaxBody: 1 << 20, QueueSize: 1, MaxWait: time.Second, SendTimeout: time.Second, MaxEvents: 1, Heartbeat: time.Second})
	if err := srv3.Listen(); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	srv3.Close()
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatal("the regular file was changed")
	}
	// Close removes the socket and leaves no stray temporary directory.
	s.srv.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "file" {
		t.Fatalf("directory after Close: %v", ents)
	}
}

func TestLoopbackTCP(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice")
	s := startSidecar(t, a, "127.0.0.1:0", nil)
	if !strings.HasPrefix(s.srv.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %q", s.srv.URL())
	}
	if code, reg := s.do(t, "GET", "/v1/registration", ""); code != 200 || reg["name"] != "alice" {
		t.Fatalf("%d %v", code, reg)
	}
	// What a web page could send: a cross-origin POST, or a request through a rebound name.
	for _, c := range []struct {
		name  string
		host  string
		hdr   map[string]string
		want  int
		words string
	}{
		{"browser origin", "", map[string]string{"Origin": "http://evil.example"}, 403, "Origin"},
		{"rebound host", "evil.example", nil, 403, "host"},
		{"localhost", "localhost", nil, 200, ""},
		{"ipv6 loopback name", "[::1]:1", nil, 200, ""},
	} {
		req, err := http.NewRequest("POST", s.srv.URL()+"/v1/events", strings.NewReader(`{"events":[{"kind":"tool_call","name":"x"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		if c.host != "" {
			req.Host = c.host
		}
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want || !strings.Contains(string(body), c.words) {
			t.Errorf("%s: %d %s, want %d mentioning %q", c.name, resp.StatusCode, body, c.want, c.words)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Listen = "0.0.0.0:1" }, "not a loopback"},
		{func(c *Config) { c.MaxBody = 10 }, "MaxBody 10"},
		{func(c *Config) { c.QueueSize = 0 }, "QueueSize 0"},
		{func(c *Config) { c.MaxWait = 0 }, "MaxWait 0s"},
		{func(c *Config) { c.SendTimeout = 0 }, "SendTimeout 0s"},
		{func(c *Config) { c.MaxEvents = 0 }, "MaxEvents 0"},
		{func(c *Config) { c.Heartbeat = 0 }, "Heartbeat 0s"},
	} {
		c := DefaultConfig()
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want %q", err, tc.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestStatusFollowsNotify: an agent without a registration yet starts "connecting"; the state then
// follows Notify, on /v1/status and on the stream.
func TestStatusFollowsNotify(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice")
	a.mu.Lock()
	a.reg = agent.Registration{}
	a.mu.Unlock()
	s := startSidecar(t, a, "", nil)
	if _, st := s.do(t, "GET", "/v1/status", ""); st["state"] != "connecting" || st["node"] != nil {
		t.Fatalf("initial status %v", st)
	}
	ev := s.stream(t)
	if name, data := ev.next(t, 5*time.Second); name != "status" || data["state"] != "connecting" {
		t.Fatalf("first event %s %v", name, data)
	}
	a.notify <- agent.ConnEvent{State: agent.StateConnected, Node: mesh.node}
	if name, data := ev.next(t, 5*time.Second); name != "status" || data["state"] != "connected" || data["node"] != mesh.node.String() {
		t.Fatalf("event %s %v", name, data)
	}
	if _, st := s.do(t, "GET", "/v1/status", ""); st["state"] != "connected" || st["since"] == "0001-01-01T00:00:00Z" {
		t.Fatalf("status %v", st)
	}
	a.notify <- agent.ConnEvent{State: agent.StateConnecting, Reason: "connection reset"}
	if name, data := ev.next(t, 5*time.Second); name != "status" || data["state"] != "connecting" || data["reason"] != "connection reset" {
		t.Fatalf("event %s %v", name, data)
	}
}

// TestCloseEndsStreamsAndPolls: Close ends an open stream and a waiting long poll, removes the
// socket, and is idempotent.
func TestCloseEndsStreamsAndPolls(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice")
	s := startSidecar(t, a, "", nil)
	st := s.stream(t)
	st.next(t, 5*time.Second)
	pollDone := make(chan error, 1)
	go func() {
		resp, err := s.hc.Get(s.base + "/v1/messages?wait=60s")
		if err == nil {
			resp.Body.Close()
		}
		pollDone <- err
	}()
	time.Sleep(100 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- s.srv.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked")
	}
	select {
	case <-pollDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll outlived Close")
	}
	readDone := make(chan struct{})
	go func() {
		for {
			if _, err := st.rd.ReadString('\n'); err != nil {
				close(readDone)
				return
			}
		}
	}()
	select {
	case <-readDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived Close")
	}
	if err := s.srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestStreamReportsDrops: messages dropped from a full queue are announced on the stream before
// the messages that survived.
func TestStreamReportsDrops(t *testing.T) {
	mesh := newTestMesh(t)
	a := mesh.add(t, "alice", "send:bob")
	b := mesh.add(t, "bob")
	s := startSidecar(t, b, "", func(c *Config) { c.QueueSize = 2 })
	for i := range 5 {
		if _, err := a.Send(t.Context(), "bob", "chat", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	st := s.stream(t)
	want := []string{"status", "dropped", "message", "message"}
	for i, w := range want {
		name, data := st.next(t, 5*time.Second)
		if name != w {
			t.Fatalf("event %d: %s %v, want %s", i, name, data, w)
		}
		switch {
		case name == "dropped" && data["dropped"] != float64(3):
			t.Fatalf("dropped %v, want 3", data)
		case name == "message" && data["body"] != fmt.Sprint(i+1):
			t.Fatalf("message %v, want body %d", data, i+1)
		}
	}
}
