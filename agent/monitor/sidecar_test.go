package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sidecar is a running API over a Backend with an HTTP client for it; reusable by end-to-end
// tests that pass a real *agent.Client as the Backend.
type sidecar struct {
	srv  *Server
	hc   *http.Client
	base string // "http://…" prefix for request URLs
}

// clientFor returns an HTTP client and URL prefix for a VIGIL_MONITOR_URL value.
func clientFor(t testing.TB, url string) (*http.Client, string) {
	t.Helper()
	if path, ok := strings.CutPrefix(url, "unix://"); ok {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}, "http://monitor"
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, url
}

// startSidecar serves the API over b on a unix socket in a temporary directory (or on listen if
// not empty), closed at the end of the test.
func startSidecar(t testing.TB, b Backend, listen string, mutate func(*Config)) *sidecar {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = listen
	if listen == "" {
		cfg.Listen = "unix:" + filepath.Join(shortTempDir(t), "m.sock")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	hc, base := clientFor(t, srv.URL())
	return &sidecar{srv: srv, hc: hc, base: base}
}

// shortTempDir is a temporary directory with a path short enough for a unix socket (108 bytes).
func shortTempDir(t testing.TB) string {
	d, err := os.MkdirTemp("", "vm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// do makes a request and decodes the JSON answer into a generic map.
func (s *sidecar) do(t testing.TB, method, path, body string) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, body %s", method, path, ct, data)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s %s: %v in %s", method, path, err, data)
	}
	return resp.StatusCode, out
}

// sse reads server-sent events from the stream.
type sse struct {
	resp *http.Response
	rd   *bufio.Reader
}

func (s *sidecar) stream(t testing.TB) *sse {
	t.Helper()
	resp, err := s.hc.Get(s.base + "/v1/messages/stream")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &sse{resp: resp, rd: bufio.NewReader(resp.Body)}
}

// next returns the next event's name and data (skipping comments), failing after d.
func (e *sse) next(t testing.TB, d time.Duration) (string, map[string]any) {
	t.Helper()
	type res struct {
		name, data string
		err        error
	}
	ch := make(chan res, 1)
	go func() {
		var r res
		for {
			line, err := e.rd.ReadString('\n')
			if err != nil {
				r.err = err
				ch <- r
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "" && r.name != "":
				ch <- r
				return
			case strings.HasPrefix(line, "event: "):
				r.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				r.data = line[len("data: "):]
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("stream: %v", r.err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(r.data), &m); err != nil {
			t.Fatalf("stream event %s: %v in %s", r.name, err, r.data)
		}
		return r.name, m
	case <-time.After(d):
		t.Fatal("stream: no event in time")
	}
	return "", nil
}
