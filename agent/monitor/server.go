package monitor

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vigil-mesh/vigil/agent"
)

// Config configures the sidecar's HTTP API.
type Config struct {
	// Listen is "unix:/path/to.sock" (created with mode 0600) or a loopback "127.0.0.1:PORT" /
	// "[::1]:PORT" / "localhost:PORT" (port 0 picks a free one). Default "unix:vigil-monitor.sock".
	Listen string
	// MaxBody caps every request body, in bytes, before it is read. Default 1 MiB.
	MaxBody int64
	// QueueSize bounds the received messages waiting for the agent; when full the oldest is
	// dropped and counted. Default 1000.
	QueueSize int
	// MaxWait caps the ?wait= of a long poll. Default 60s.
	MaxWait time.Duration
	// SendTimeout bounds one POST /v1/messages. Default 30s.
	SendTimeout time.Duration
	// MaxEvents caps the events in one POST /v1/events batch. Default 1000.
	MaxEvents int
	// Heartbeat is the interval of SSE keep-alive comments. Default 15s.
	Heartbeat time.Duration
	// Logger receives the sidecar's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Listen:      "unix:vigil-monitor.sock",
		MaxBody:     1 << 20,
		QueueSize:   1000,
		MaxWait:     60 * time.Second,
		SendTimeout: 30 * time.Second,
		MaxEvents:   1000,
		Heartbeat:   15 * time.Second,
	}
}

// Validate checks the configuration, naming the field at fault.
func (c Config) Validate() error {
	if _, _, err := ParseListen(c.Listen); err != nil {
		return err
	}
	switch {
	case c.MaxBody < 1024:
		return fmt.Errorf("monitor: MaxBody %d: must be at least 1024 bytes", c.MaxBody)
	case c.QueueSize < 1:
		return fmt.Errorf("monitor: QueueSize %d: must be at least 1", c.QueueSize)
	case c.MaxWait < time.Second:
		return fmt.Errorf("monitor: MaxWait %s: must be at least 1s", c.MaxWait)
	case c.SendTimeout < 100*time.Millisecond:
		return fmt.Errorf("monitor: SendTimeout %s: must be at least 100ms", c.SendTimeout)
	case c.MaxEvents < 1:
		return fmt.Errorf("monitor: MaxEvents %d: must be at least 1", c.MaxEvents)
	case c.Heartbeat < 10*time.Millisecond:
		return fmt.Errorf("monitor: Heartbeat %s: must be at least 10ms", c.Heartbeat)
	}
	return nil
}

// ParseListen splits a --listen value into a network ("unix" or "tcp") and an address. A TCP
// address must be a loopback IP literal or "localhost": the API carries the agent's authority.
func ParseListen(s string) (network, addr string, err error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		path = strings.TrimPrefix(path, "//") // accept unix:///abs/path too
		if path == "" {
			return "", "", fmt.Errorf("monitor: --listen %q: empty socket path", s)
		}
		return "unix", path, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("monitor: --listen %q: want unix:/path or 127.0.0.1:PORT: %v", s, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", "", fmt.Errorf("monitor: --listen %q: port %q is not a number 0-65535", s, port)
	}
	if host == "localhost" {
		return "tcp", net.JoinHostPort("127.0.0.1", port), nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", "", fmt.Errorf("monitor: --listen %q: host %q is not a loopback address; the API carries the agent's authority and listens only on loopback or a unix socket", s, host)
	}
	return "tcp", s, nil
}

// Server is the sidecar's HTTP API over a Backend.
type Server struct {
	b      Backend
	cfg    Config
	log    *slog.Logger
	inbox  *inbox
	status status
	mux    map[string]map[string]http.HandlerFunc
	tcp    bool // listening on loopback TCP: the Host of a request is checked

	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	ln       net.Listener
	hs       *http.Server
	url      string
	sockPath string
	closed   bool
}

// New builds the API over b and installs the sidecar as b's default message handler. It starts
// one goroutine that follows b.Notify(); Close stops it. The state starts as "connected" when b
// already has a registration and "connecting" otherwise.
func New(b Backend, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{b: b, cfg: cfg, log: cfg.Logger, inbox: newInbox(cfg.QueueSize), stop: make(chan struct{})}
	network, _, _ := ParseListen(cfg.Listen) // Validate checked it
	s.tcp = network == "tcp"
	if s.log == nil {
		s.log = slog.Default()
	}
	reg := b.Registration()
	s.status.changed = make(chan struct{})
	s.status.ev = agent.ConnEvent{State: agent.StateConnecting, At: time.Now()}
	if !reg.Node.IsZero() {
		s.status.ev = agent.ConnEvent{State: agent.StateConnected, Node: reg.Node, At: time.Now()}
	}
	b.Handle("", func(_ context.Context, m agent.Message) error {
		s.inbox.push(m)
		return nil
	})
	s.mux = map[string]map[string]http.HandlerFunc{
		"/healthz":            {"GET": s.healthz},
		"/v1/registration":    {"GET": s.registration},
		"/v1/messages":        {"GET": s.poll, "POST": s.send},
		"/v1/messages/stream": {"GET": s.stream},
		"/v1/events":          {"POST": s.events},
		"/v1/status":          {"GET": s.getStatus},
	}
	s.wg.Add(1)
	go s.follow()
	return s, nil
}

func (s *Server) follow() {
	defer s.wg.Done()
	ch := s.b.Notify()
	for {
		select {
		case <-s.stop:
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if ev.At.IsZero() {
				ev.At = time.Now()
			}
			s.status.set(ev)
			if ev.State == agent.StateCutOff {
				s.log.Warn("agent cut off by its node", "node", ev.Node.String(), "reason", ev.Reason)
			}
		}
	}
}

// ServeHTTP routes a request; unknown paths get 404 and wrong methods 405, both in JSON. A
// request a web browser made for a page (it carries Origin) or that names a host other than
// loopback (a DNS-rebinding page on a TCP listener) is refused with 403 before anything else:
// the API carries the agent's authority, and only programs on this host may use it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.checkCaller(r); err != nil {
		writeErr(w, http.StatusForbidden, apiError{Code: "forbidden", Message: err.Error()})
		return
	}
	methods, ok := s.mux[r.URL.Path]
	if !ok {
		writeErr(w, http.StatusNotFound, apiError{Code: "not_found", Message: fmt.Sprintf("no endpoint %s", r.URL.Path)})
		return
	}
	h, ok := methods[r.Method]
	if !ok {
		allow := make([]string, 0, len(methods))
		for m := range methods {
			allow = append(allow, m)
		}
		sort.Strings(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeErr(w, http.StatusMethodNotAllowed, apiError{Code: "method_not_allowed",
			Message: fmt.Sprintf("%s %s: allowed methods: %s", r.Method, r.URL.Path, strings.Join(allow, ", "))})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	h(w, r)
}

// checkCaller refuses what a browser page could send: any request with an Origin header (set by
// browsers on cross-origin and on POST requests; agents' HTTP clients do not send it) and, on a
// TCP listener, a Host that is not localhost or a loopback address.
func (s *Server) checkCaller(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" {
		return fmt.Errorf("request with Origin %q refused: the sidecar serves the agent's programs, not web pages", o)
	}
	if !s.tcp {
		return nil // a unix socket: its mode (0600) is the access control, Host means nothing
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("request for host %q refused: use 127.0.0.1 or localhost (the sidecar listens on loopback only)", r.Host)
}

// Listen opens the configured listener and serves on it in the background. For a unix socket it
// refuses a path held by a live listener, replaces a stale socket, and creates the socket with
// mode 0600 (bound in a private directory, then renamed into place, so it is never reachable
// with a wider mode).
func (s *Server) Listen() error {
	network, addr, err := ParseListen(s.cfg.Listen)
	if err != nil {
		return err
	}
	var ln net.Listener
	var url string
	if network == "unix" {
		abs, err := filepath.Abs(addr)
		if err != nil {
			return fmt.Errorf("monitor: --listen %s: %w", s.cfg.Listen, err)
		}
		ln, err = listenUnix(abs)
		if err != nil {
			return err
		}
		s.sockPath = abs
		url = "unix://" + abs
	} else {
		ln, err = net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("monitor: --listen %s: %w", s.cfg.Listen, err)
		}
		url = "http://" + ln.Addr().String()
	}
	s.mu.Lock()
	s.ln, s.url = ln, url
	s.hs = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("monitor API stopped", "err", err)
		}
	}()
	return nil
}

func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("monitor: --listen unix:%s: the path exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("monitor: --listen unix:%s: another process is listening there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("monitor: --listen unix:%s: removing the stale socket: %w", path, err)
		}
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".vigil-monitor-")
	if err != nil {
		return nil, fmt.Errorf("monitor: --listen unix:%s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("monitor: --listen unix:%s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err == nil {
		err = os.Rename(tmp, path)
		if err == nil {
			return ln, nil
		}
	}
	ln.Close()
	return nil, fmt.Errorf("monitor: --listen unix:%s: could not place the socket with mode 0600: %w", path, err)
}

// URL is the address the agent uses, as passed in VIGIL_MONITOR_URL: "unix:///abs/path.sock"
// or "http://127.0.0.1:PORT". Empty before Listen.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Close stops serving (open streams and long polls end), stops following Notify and removes the
// unix socket. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	hs, path := s.hs, s.sockPath
	s.mu.Unlock()
	close(s.stop)
	var err error
	if hs != nil {
		err = hs.Close()
	}
	s.wg.Wait()
	if path != "" {
		os.Remove(path)
	}
	return err
}

// --- wire types ---

type apiError struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Rule    string `json:"rule,omitempty"`
	Hop     string `json:"hop,omitempty"`
	Message string `json:"message"`
}

type registrationJSON struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	SpiffeID     string            `json:"spiffe_id"`
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Capabilities []string          `json:"capabilities"`
	ExpiresAt    *time.Time        `json:"expires_at,omitempty"`
	Node         string            `json:"node,omitempty"`
}

type sendRequest struct {
	To         *string `json:"to"`
	Capability *string `json:"capability"`
	Body       *string `json:"body"`
	BodyBase64 *string `json:"body_base64"`
}

type receiptJSON struct {
	ID        string  `json:"id"`
	LatencyMS float64 `json:"latency_ms"`
}

type messageJSON struct {
	ID         string    `json:"id"`
	From       string    `json:"from"`
	FromID     string    `json:"from_id,omitempty"`
	To         string    `json:"to"`
	Capability string    `json:"capability"`
	Body       *string   `json:"body,omitempty"`        // when the body is valid UTF-8
	BodyBase64 *string   `json:"body_base64,omitempty"` // otherwise
	SentAt     time.Time `json:"sent_at"`
}

type pollResponse struct {
	Messages []messageJSON `json:"messages"`
	Dropped  uint64        `json:"dropped"` // messages dropped (queue full) since the last take
}

type eventJSON struct {
	Kind  *string           `json:"kind"`
	Name  *string           `json:"name"`
	Value *float64          `json:"value"`
	Attrs map[string]string `json:"attrs"`
	At    *time.Time        `json:"at"`
}

type statusJSON struct {
	State  string    `json:"state"`
	Node   string    `json:"node,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	Queued int       `json:"queued"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, e apiError) {
	writeJSON(w, code, map[string]apiError{"error": e})
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and trailing data, and turns
// the decoder's errors into an apiError that names the field.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeErr(w, http.StatusRequestEntityTooLarge, apiError{Code: "body_too_large",
				Message: fmt.Sprintf("request body over %d bytes", mb.Limit)})
			return false
		}
		writeErr(w, http.StatusBadRequest, apiError{Code: "bad_request", Message: "reading the body: " + err.Error()})
		return false
	}
	if e := decodeBytes(data, v); e != nil {
		writeErr(w, http.StatusBadRequest, *e)
		return false
	}
	return true
}

func decodeBytes(data []byte, v any) *apiError {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return &apiError{Code: "bad_request", Message: "trailing data after the JSON value"}
	}
	return nil
}

func jsonError(err error) *apiError {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		f := strings.TrimPrefix(te.Field, "eventJSON.") // the embedded single event of POST /v1/events
		return &apiError{Code: "bad_request", Field: f,
			Message: fmt.Sprintf("field %q: got a JSON %s, want %s", f, te.Value, jsonKind(te.Type.String()))}
	case errors.As(err, &se):
		return &apiError{Code: "bad_request", Message: fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &apiError{Code: "bad_request", Message: "malformed JSON: the value ends early"}
	case errors.Is(err, io.EOF):
		return &apiError{Code: "bad_request", Message: "empty body: want a JSON object"}
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return &apiError{Code: "bad_request", Field: f, Message: fmt.Sprintf("unknown field %q", f)}
	}
	return &apiError{Code: "bad_request", Message: strings.TrimPrefix(msg, "json: ")}
}

func jsonKind(goType string) string {
	switch {
	case strings.Contains(goType, "string") && strings.HasPrefix(goType, "map"):
		return "an object of strings"
	case strings.Contains(goType, "string"):
		return "a string"
	case strings.Contains(goType, "float"):
		return "a number"
	case strings.Contains(goType, "Time"):
		return "an RFC 3339 time string"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	}
	return goType
}

// --- handlers ---

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) registration(w http.ResponseWriter, _ *http.Request) {
	reg := s.b.Registration()
	out := registrationJSON{ID: s.b.ID().String(), Name: reg.Name, SpiffeID: reg.SpiffeID, Status: reg.Status,
		Labels: reg.Labels, Capabilities: reg.Capabilities}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if out.Capabilities == nil {
		out.Capabilities = []string{}
	}
	if !reg.ExpiresAt.IsZero() {
		t := reg.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	if !reg.Node.IsZero() {
		out.Node = reg.Node.String()
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) statusJSON(ev agent.ConnEvent) statusJSON {
	out := statusJSON{State: ev.State.String(), Reason: ev.Reason, Since: ev.At.UTC()}
	if !ev.Node.IsZero() {
		out.Node = ev.Node.String()
	}
	s.inbox.mu.Lock()
	out.Queued = s.inbox.n
	s.inbox.mu.Unlock()
	return out
}

func (s *Server) getStatus(w http.ResponseWriter, _ *http.Request) {
	ev, _ := s.status.get()
	writeJSON(w, http.StatusOK, s.statusJSON(ev))
}

const maxNameLen = 256

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	var req sendRequest
	if !decodeStrict(w, r, &req) {
		return
	}
	bad := func(field, msg string) {
		writeErr(w, http.StatusBadRequest, apiError{Code: "bad_request", Field: field, Message: msg})
	}
	switch {
	case req.To == nil || *req.To == "":
		bad("to", `missing "to": the destination agent's name`)
		return
	case len(*req.To) > maxNameLen:
		bad("to", fmt.Sprintf(`"to" is %d bytes, at most %d`, len(*req.To), maxNameLen))
		return
	case req.Capability == nil || *req.Capability == "":
		bad("capability", `missing "capability": the capability the message uses`)
		return
	case len(*req.Capability) > maxNameLen:
		bad("capability", fmt.Sprintf(`"capability" is %d bytes, at most %d`, len(*req.Capability), maxNameLen))
		return
	case req.Body != nil && req.BodyBase64 != nil:
		bad("body_base64", `give "body" or "body_base64", not both`)
		return
	}
	var body []byte
	if req.Body != nil {
		body = []byte(*req.Body)
	} else if req.BodyBase64 != nil {
		var err error
		if body, err = base64.StdEncoding.DecodeString(*req.BodyBase64); err != nil {
			bad("body_base64", fmt.Sprintf(`"body_base64" is not standard base64: %v`, err))
			return
		}
	}
	if ev, _ := s.status.get(); ev.State == agent.StateCutOff {
		writeErr(w, http.StatusForbidden, apiError{Code: "cut_off", Hop: "sender-node", Rule: ev.Reason,
			Message: "this agent is cut off by its node: " + ev.Reason})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.SendTimeout)
	defer cancel()
	rc, err := s.b.Send(ctx, *req.To, *req.Capability, body)
	var re *agent.RefusedError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, receiptJSON{ID: rc.ID, LatencyMS: float64(rc.Latency) / float64(time.Millisecond)})
	case errors.Is(err, agent.ErrThrottled) && errors.As(err, &re):
		// The node throttles this agent: a rate limit, not a denial. The agent stays connected.
		writeErr(w, http.StatusTooManyRequests, apiError{Code: re.Code, Rule: re.Rule, Hop: re.Hop, Message: re.Error()})
	case errors.As(err, &re):
		writeErr(w, http.StatusForbidden, apiError{Code: re.Code, Rule: re.Rule, Hop: re.Hop, Message: re.Error()})
	case errors.Is(err, context.DeadlineExceeded):
		writeErr(w, http.StatusGatewayTimeout, apiError{Code: "timeout",
			Message: fmt.Sprintf("no receipt within %s", s.cfg.SendTimeout)})
	default:
		writeErr(w, http.StatusBadGateway, apiError{Code: "send_failed", Message: err.Error()})
	}
}

func toJSON(m agent.Message) messageJSON {
	out := messageJSON{ID: m.ID, From: m.From, To: m.To, Capability: m.Capability, SentAt: m.SentAt.UTC()}
	if !m.FromID.IsZero() {
		out.FromID = m.FromID.String()
	}
	if utf8.Valid(m.Body) {
		b := string(m.Body)
		out.Body = &b
	} else {
		b := base64.StdEncoding.EncodeToString(m.Body)
		out.BodyBase64 = &b
	}
	return out
}

func (s *Server) poll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "wait" && k != "max" {
			writeErr(w, http.StatusBadRequest, apiError{Code: "bad_request", Field: k,
				Message: fmt.Sprintf("unknown query parameter %q (want wait, max)", k)})
			return
		}
	}
	wait := time.Duration(0)
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeErr(w, http.StatusBadRequest, apiError{Code: "bad_request", Field: "wait",
				Message: fmt.Sprintf("wait %q: want a non-negative duration such as 30s", v)})
			return
		}
		wait = min(d, s.cfg.MaxWait)
	}
	max := 100
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeErr(w, http.StatusBadRequest, apiError{Code: "bad_request", Field: "max",
				Message: fmt.Sprintf("max %q: want an integer from 1 to 10000", v)})
			return
		}
		max = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	ms, dropped := s.inbox.wait(ctx, max)
	out := pollResponse{Messages: make([]messageJSON, len(ms)), Dropped: dropped}
	for i, m := range ms {
		out.Messages[i] = toJSON(m)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeErr(w, http.StatusInternalServerError, apiError{Code: "internal", Message: "streaming unsupported"})
		return
	}
	if len(r.URL.Query()) > 0 {
		writeErr(w, http.StatusBadRequest, apiError{Code: "bad_request", Message: "the stream takes no query parameters"})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	event := func(name string, v any) bool {
		b, _ := json.Marshal(v)
		_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
		return err == nil
	}
	statusEvent := func(ev agent.ConnEvent) bool {
		name := "status"
		if ev.State == agent.StateCutOff {
			name = "cut_off"
		}
		return event(name, s.statusJSON(ev))
	}
	ev, changed := s.status.get()
	if !statusEvent(ev) {
		return
	}
	fl.Flush()
	hb := time.NewTicker(s.cfg.Heartbeat)
	defer hb.Stop()
	for {
		ms, dropped, ready := s.inbox.take(100)
		if dropped > 0 && !event("dropped", map[string]uint64{"dropped": dropped}) {
			return
		}
		for _, m := range ms {
			if !event("message", toJSON(m)) {
				return
			}
		}
		if len(ms) > 0 || dropped > 0 {
			fl.Flush()
			continue
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.stop:
			return
		case <-ready:
		case <-changed:
			ev, changed = s.status.get()
			if !statusEvent(ev) {
				return
			}
			fl.Flush()
		case <-hb.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

var validKinds = map[string]bool{"tool_call": true, "metric": true, "error": true, "custom": true}

const (
	maxAttrs       = 32
	maxAttrLen     = 1024
	maxEventFields = 256 // name and kind length
)

func parseEvent(e eventJSON, prefix string) (agent.Event, *apiError) {
	bad := func(field, msg string) *apiError {
		return &apiError{Code: "bad_request", Field: prefix + field, Message: prefix + field + ": " + msg}
	}
	switch {
	case e.Kind == nil || *e.Kind == "":
		return agent.Event{}, bad("kind", "missing (tool_call, metric, error or custom)")
	case !validKinds[*e.Kind]:
		return agent.Event{}, bad("kind", fmt.Sprintf("%q is not one of tool_call, metric, error, custom", *e.Kind))
	case e.Name == nil || *e.Name == "":
		return agent.Event{}, bad("name", "missing")
	case len(*e.Name) > maxEventFields:
		return agent.Event{}, bad("name", fmt.Sprintf("%d bytes, at most %d", len(*e.Name), maxEventFields))
	case *e.Kind == "metric" && e.Value == nil:
		return agent.Event{}, bad("value", "a metric needs a value")
	case len(e.Attrs) > maxAttrs:
		return agent.Event{}, bad("attrs", fmt.Sprintf("%d attributes, at most %d", len(e.Attrs), maxAttrs))
	}
	for k, v := range e.Attrs {
		if len(k)+len(v) > maxAttrLen {
			return agent.Event{}, bad("attrs."+k, fmt.Sprintf("key and value are %d bytes, at most %d", len(k)+len(v), maxAttrLen))
		}
	}
	ev := agent.Event{Kind: *e.Kind, Name: *e.Name, Attrs: e.Attrs}
	if e.Value != nil {
		ev.Value = *e.Value
	}
	if e.At != nil {
		ev.At = *e.At
	}
	return ev, nil
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeErr(w, http.StatusRequestEntityTooLarge, apiError{Code: "body_too_large",
				Message: fmt.Sprintf("request body over %d bytes", mb.Limit)})
			return
		}
		writeErr(w, http.StatusBadRequest, apiError{Code: "bad_request", Message: "reading the body: " + err.Error()})
		return
	}
	// One decode: either a batch {"events":[…]} or the fields of one event.
	var req struct {
		Events *[]eventJSON `json:"events"`
		eventJSON
	}
	if e := decodeBytes(data, &req); e != nil {
		writeErr(w, http.StatusBadRequest, *e)
		return
	}
	raw := []eventJSON{req.eventJSON}
	prefix := func(int) string { return "" }
	if req.Events != nil {
		one := req.eventJSON
		if one.Kind != nil || one.Name != nil || one.Value != nil || one.Attrs != nil || one.At != nil {
			writeErr(w, http.StatusBadRequest, apiError{Code: "bad_request", Field: "events",
				Message: `give one event or a batch {"events":[…]}, not both`})
			return
		}
		raw = *req.Events
		if len(raw) == 0 {
			writeErr(w, http.StatusBadRequest, apiError{Code: "bad_request", Field: "events", Message: "events: empty batch"})
			return
		}
		if len(raw) > s.cfg.MaxEvents {
			writeErr(w, http.StatusBadRequest, apiError{Code: "bad_request", Field: "events",
				Message: fmt.Sprintf("events: %d in one batch, at most %d", len(raw), s.cfg.MaxEvents)})
			return
		}
		prefix = func(i int) string { return fmt.Sprintf("events[%d].", i) }
	}
	evs := make([]agent.Event, len(raw))
	for i, e := range raw {
		ev, ae := parseEvent(e, prefix(i))
		if ae != nil {
			writeErr(w, http.StatusBadRequest, *ae)
			return
		}
		evs[i] = ev
	}
	if err := s.b.Report(r.Context(), evs...); err != nil {
		var re *agent.RefusedError
		if errors.As(err, &re) {
			writeErr(w, http.StatusForbidden, apiError{Code: re.Code, Rule: re.Rule, Hop: re.Hop, Message: re.Error()})
			return
		}
		writeErr(w, http.StatusBadGateway, apiError{Code: "report_failed", Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"accepted": len(evs)})
}
