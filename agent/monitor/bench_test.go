package monitor

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/agent"
)

// discardBackend is a testBackend whose Report hands events to nothing, so the benchmark measures
// the API and not the growth of a slice.
type discardBackend struct{ *testBackend }

func (discardBackend) Report(context.Context, ...agent.Event) error { return nil }

const (
	benchEvent = `{"kind":"tool_call","name":"search","value":0.2,"attrs":{"q":"weather"}}`
)

func benchBatch(n int) string {
	evs := make([]string, n)
	for i := range evs {
		evs[i] = benchEvent
	}
	return `{"events":[` + strings.Join(evs, ",") + `]}`
}

// bareServer serves a net/http handler that drains the body and answers 200 {} on the same kind
// of listener: the floor any HTTP API on this transport pays.
func bareServer(b *testing.B, network string) string {
	var ln net.Listener
	var err error
	url := ""
	if network == "unix" {
		path := filepath.Join(shortTempDir(b), "bare.sock")
		ln, err = net.Listen("unix", path)
		url = "unix://" + path
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			url = "http://" + ln.Addr().String()
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}\n")
	})}
	go hs.Serve(ln)
	b.Cleanup(func() { hs.Close() })
	return url
}

func postLoop(b *testing.B, hc *http.Client, url, body string, perReq int) {
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := hc.Post(url+"/v1/events", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64(b.N*perReq)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEvents: POST /v1/events through the sidecar beside a bare handler, over a unix socket
// and loopback TCP, one event per request and batches of 100.
func BenchmarkEvents(b *testing.B) {
	for _, network := range []string{"unix", "tcp"} {
		for _, batch := range []int{1, 100} {
			body := benchEvent
			if batch > 1 {
				body = benchBatch(batch)
			}
			name := network + "/batch=" + strconv.Itoa(batch)
			b.Run(name+"/bare", func(b *testing.B) {
				hc, base := clientFor(b, bareServer(b, network))
				postLoop(b, hc, base, body, batch)
			})
			b.Run(name+"/sidecar", func(b *testing.B) {
				mesh := newTestMesh(b)
				be := discardBackend{mesh.add(b, "alice")}
				listen := "127.0.0.1:0"
				if network == "unix" {
					listen = ""
				}
				s := startSidecar(b, be, listen, nil)
				postLoop(b, s.hc, s.base, body, batch)
			})
		}
	}
}
