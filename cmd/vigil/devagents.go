package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-mesh/vigil/agent"
	"github.com/vigil-mesh/vigil/agent/monitor"
	"github.com/vigil-mesh/vigil/identity"
)

// The demo agents of `vigil dev`. Every active demo agent connects with the Go SDK (agent.Connect)
// to a node, round robin. The first two also run the way an agent in any language does: through
// a `vigil monitor` sidecar (monitor.Run, in this process, watching this process) and a small
// program speaking the sidecar's HTTP API over its unix socket. demo-agent-1 sends demo-agent-2 a
// chat message every --message-every; each of them answers every message that is not itself an
// answer (so the Python example's message to either is answered too) and reports a tool_call
// event per message. Changes (first delivery, a refusal, being cut off) are printed; the steady
// traffic is not, it shows in `vigil agent activity` and /metrics.

// devDemo is the running demo agents.
type devDemo struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	clients  []*agent.Client
	at       map[string]string // agent name → node it is connected to
	sidecars map[string]string // agent name → its sidecar's VIGIL_MONITOR_URL
	every    time.Duration
	sockDir  string   // a folder created for the sockets when DIR's path is too long for one; removed on close
	dir      string   // the mesh's folder
	inactive []string // demo talkers the registry does not hold active: "demo-agent-1 is revoked"
	programs []func() // the demo programs, started by begin
	dctx     context.Context
}

// demoTalkers are the two agents that run through sidecars and message each other.
var demoTalkers = [2]string{"demo-agent-1", "demo-agent-2"}

// maxSockPath keeps unix socket paths under the kernel's limit (108 bytes with the terminator).
const maxSockPath = 100

func startDemo(ctx context.Context, out io.Writer, o devOptions, nodes []*devNode, logger *slog.Logger) (*devDemo, error) {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d := &devDemo{cancel: cancel, dctx: dctx, at: map[string]string{}, sidecars: map[string]string{}, every: o.msgEvery, dir: o.dir}
	ok := false
	defer func() {
		if !ok {
			d.close()
		}
	}()
	clients := map[string]*agent.Client{}
	for i := 1; i <= o.agents; i++ {
		name := fmt.Sprintf("demo-agent-%d", i)
		active := false
		nodes[0].node.Read(func(r *identity.Registry) {
			a, ok := r.Agent(name)
			active = ok && a.StatusAt(time.Now()) == identity.StatusActive
			if ok && !active && slices.Contains(demoTalkers[:], name) {
				d.inactive = append(d.inactive, fmt.Sprintf("%s is %s", name, a.StatusAt(time.Now())))
			}
		})
		if !active {
			continue // revoked, quarantined or expired, as an operator left it: the gaters refuse it
		}
		key, err := identity.LoadKeyFile(filepath.Join(o.dir, "agents", name+".key"), identity.RoleAgent)
		if err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
		idx := (i - 1) % len(nodes)
		n := nodes[idx]
		cfg := agent.DefaultConfig()
		cfg.Key = key
		cfg.Nodes = []string{fmt.Sprintf("%s/p2p/%s", devAddr(o.basePort, idx+1), n.host.ID())}
		cfg.Logger = logger.With("agent", name)
		cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
		c, err := agent.Connect(cctx, cfg)
		ccancel()
		if err != nil {
			return nil, fmt.Errorf("dev: connect %s to %s: %w", name, n.name, err)
		}
		d.clients = append(d.clients, c)
		clients[name] = c
		d.at[name] = n.name
	}
	if clients[demoTalkers[0]] == nil || clients[demoTalkers[1]] == nil {
		ok = true
		return d, nil // fewer than two active demo agents: nobody to talk to
	}
	abs, err := filepath.Abs(o.dir)
	if err != nil {
		return nil, err
	}
	sockDir := abs
	if len(filepath.Join(abs, "demo-agent-1-monitor.sock")) > maxSockPath {
		if d.sockDir, err = os.MkdirTemp("", "vigil-dev-"); err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
		sockDir = d.sockDir
	}
	for i, name := range demoTalkers {
		sock := filepath.Join(sockDir, name+"-monitor.sock")
		api := monitor.DefaultConfig()
		api.Listen = "unix:" + sock
		api.Logger = logger.With("sidecar", name)
		rc := monitor.RunConfig{API: api, PID: os.Getpid(), Interval: 5 * time.Second, Logger: api.Logger}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if _, err := monitor.Run(dctx, clients[name], rc); err != nil && dctx.Err() == nil {
				fmt.Fprintf(out, "demo: %s: sidecar stopped: %v\n", name, err)
			}
		}()
		url := "unix://" + sock
		hc := unixHTTPClient(sock)
		if err := waitSidecar(ctx, hc); err != nil {
			return nil, fmt.Errorf("dev: %s's sidecar at %s: %w", name, url, err)
		}
		d.sidecars[name] = url
		a := &demoAgent{name: name, hc: hc, out: out}
		if i == 0 && o.msgEvery > 0 {
			a.peer, a.every = demoTalkers[1], o.msgEvery
		}
		d.programs = append(d.programs, func() { a.run(dctx) })
	}
	ok = true
	return d, nil
}

// begin starts the demo programs (their sidecars already serve). Safe on a nil devDemo; only the
// first call starts them.
func (d *devDemo) begin() {
	if d == nil {
		return
	}
	for _, p := range d.programs {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			p()
		}()
	}
	d.programs = nil
}

// close stops the demo programs and sidecars, then closes every client. Safe on a nil devDemo.
func (d *devDemo) close() {
	if d == nil {
		return
	}
	d.cancel()
	d.wg.Wait()
	for _, c := range d.clients {
		c.Close()
	}
	d.clients = nil
	if d.sockDir != "" {
		os.RemoveAll(d.sockDir)
	}
}

// describe returns the node agent name is connected to and how it runs ("" for neither).
func (d *devDemo) describe(name string) (at, runs string) {
	if d == nil {
		return "", ""
	}
	at = d.at[name]
	switch {
	case d.sidecars[name] != "":
		runs = "sidecar " + d.sidecars[name]
	case at != "":
		runs = "Go SDK"
	case name == exampleAgent:
		runs = "(make example-python)"
	}
	return at, runs
}

// talker returns the agent that starts the demo traffic, "" when there is none.
func (d *devDemo) talker() string {
	if d == nil || len(d.sidecars) < 2 || d.every == 0 {
		return ""
	}
	return demoTalkers[0]
}

// explain writes what the demo agents do.
func (d *devDemo) explain(w io.Writer) {
	if d == nil || len(d.sidecars) < 2 {
		if d != nil && len(d.inactive) > 0 {
			fmt.Fprintf(w, "\nno demo traffic: %s (as an operator left it; the registry survives restarts).\n"+
				"Start a fresh mesh with rm -rf %s, or reinstate the agent (vigil agent reinstate NAME --agent-id ID --ttl 720h).\n",
				strings.Join(d.inactive, ", "), d.dir)
			return
		}
		fmt.Fprintln(w, "\nno demo traffic: it needs demo-agent-1 and demo-agent-2 (--agents 2 or more)")
		return
	}
	fmt.Fprintf(w, "\n%s and %s run through their own vigil monitor sidecar (in this process; a small Go program\n"+
		"speaks the sidecar's HTTP API, as examples/python/agent.py does). Each answers every message it gets and\n"+
		"reports a tool_call event for it.", demoTalkers[0], demoTalkers[1])
	if d.every > 0 {
		fmt.Fprintf(w, " %s (on %s) sends %s (on %s) a %q message every %s.\n", demoTalkers[0], d.at[demoTalkers[0]],
			demoTalkers[1], d.at[demoTalkers[1]], demoCapability, d.every)
	} else {
		fmt.Fprintln(w, " --message-every 0: neither starts a conversation.")
	}
	fmt.Fprintln(w, "Changes are reported below (first delivery, refusals, cut-offs); the steady traffic is not.")
}

func unixHTTPClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

// waitSidecar waits until the sidecar's /healthz answers.
func waitSidecar(ctx context.Context, hc *http.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://monitor/healthz", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not answering: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// demoAgent is one demo agent's program: it speaks only the sidecar's HTTP API.
type demoAgent struct {
	name  string
	hc    *http.Client
	out   io.Writer
	peer  string        // message peer every `every`; "" = only answer
	every time.Duration //

	mu       sync.Mutex
	sendSeen map[string]string    // per destination, the last send outcome, to print changes only
	printed  map[string]time.Time // per destination and outcome, when it was last printed
}

// reprintAfter keeps an outcome that flips back and forth (a throttled agent: delivered,
// refused, delivered, …) to a line per outcome this often.
const reprintAfter = 30 * time.Second

// answerPrefix marks an answer, which is not answered again.
const answerPrefix = "re: "

func (a *demoAgent) run(ctx context.Context) {
	var wg sync.WaitGroup
	if a.peer != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(a.every)
			defer t.Stop()
			for n := 1; ; n++ {
				a.send(ctx, a.peer, fmt.Sprintf("ping %d from %s", n, a.name))
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	a.receive(ctx)
	wg.Wait()
}

// apiErr is the sidecar's error body.
type apiErr struct {
	Error struct {
		Code, Rule, Hop, Message string
	} `json:"error"`
}

// call does one request to the sidecar and decodes the JSON answer into out (if not nil).
func (a *demoAgent) call(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://monitor"+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %d: %w", method, path, resp.StatusCode, err)
		}
	}
	return resp.StatusCode, nil
}

// send posts one message and prints the outcome when it differs from the previous one.
func (a *demoAgent) send(ctx context.Context, to, body string) {
	var res struct {
		apiErr
		LatencyMS float64 `json:"latency_ms"`
	}
	code, err := a.call(ctx, http.MethodPost, "/v1/messages",
		map[string]string{"to": to, "capability": demoCapability, "body": body}, &res)
	if ctx.Err() != nil {
		return
	}
	var seen, line string
	switch {
	case err != nil:
		seen, line = "error", fmt.Sprintf("demo: %s → %s: the sidecar did not answer: %v", a.name, to, err)
	case code == http.StatusOK:
		seen, line = "ok", fmt.Sprintf("demo: %s → %s: delivered (%.1f ms); further messages show in vigil agent activity %s",
			a.name, to, res.LatencyMS, a.name)
	default:
		e := res.Error
		seen = "refused " + e.Code
		if e.Hop != "" {
			line = fmt.Sprintf("demo: %s → %s: refused with %s at %s: %s", a.name, to, e.Code, e.Hop, e.Rule)
		} else { // not a refusal by a node: a timeout or a failed send
			seen = "failed " + e.Code
			line = fmt.Sprintf("demo: %s → %s: not delivered (%s): %s", a.name, to, e.Code, e.Message)
		}
	}
	a.mu.Lock()
	if a.sendSeen == nil {
		a.sendSeen, a.printed = map[string]string{}, map[string]time.Time{}
	}
	now := time.Now()
	changed := seen != a.sendSeen[to]
	a.sendSeen[to] = seen
	key := to + "\x00" + seen
	print := changed && now.Sub(a.printed[key]) >= reprintAfter
	if print {
		a.printed[key] = now
	}
	a.mu.Unlock()
	if print {
		fmt.Fprintln(a.out, line)
	}
}

// receive long-polls for messages, reports a tool_call event for each, answers the ones that are
// not answers, and prints the agent's connection state when it changes.
func (a *demoAgent) receive(ctx context.Context) {
	lastState := "connected"
	for ctx.Err() == nil {
		var poll struct {
			Messages []struct {
				From       string  `json:"from"`
				Capability string  `json:"capability"`
				Body       *string `json:"body"`
			} `json:"messages"`
			Dropped uint64 `json:"dropped"`
		}
		code, err := a.call(ctx, http.MethodGet, "/v1/messages?wait=2s", nil, &poll)
		if ctx.Err() != nil {
			return
		}
		if err != nil || code != http.StatusOK {
			sleepCtx(ctx, time.Second)
			continue
		}
		for _, m := range poll.Messages {
			start := time.Now()
			if m.Body != nil && !strings.HasPrefix(*m.Body, answerPrefix) {
				a.send(ctx, m.From, answerPrefix+*m.Body)
			}
			ev := map[string]any{"kind": "tool_call", "name": "handle_message", "value": time.Since(start).Seconds(),
				"attrs": map[string]string{"from": m.From, "capability": m.Capability}}
			a.call(ctx, http.MethodPost, "/v1/events", ev, nil)
		}
		if len(poll.Messages) > 0 {
			continue
		}
		var st struct {
			State  string `json:"state"`
			Reason string `json:"reason"`
		}
		if code, err := a.call(ctx, http.MethodGet, "/v1/status", nil, &st); err == nil && code == http.StatusOK && st.State != lastState {
			if ctx.Err() != nil {
				return
			}
			lastState = st.State
			if st.Reason != "" {
				fmt.Fprintf(a.out, "demo: %s is %s by its node: %s\n", a.name, st.State, st.Reason)
			} else {
				fmt.Fprintf(a.out, "demo: %s is %s\n", a.name, st.State)
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
