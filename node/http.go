package node

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/identity"
)

// serveHTTP starts the metrics and health endpoint (DESIGN.md §9): /metrics, /healthz (the
// process serves), /readyz (the node has applied the genesis, knows a leader and has a registry
// view, so it can enforce).
func (n *Node) serveHTTP() error {
	ln, err := net.Listen("tcp", n.cfg.Listen.HTTP)
	if err != nil {
		return fmt.Errorf("node: listen.http %s: %w", n.cfg.Listen.HTTP, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /decisions", n.serveDecisions) // gossip.go
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := n.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	n.httpLn = ln
	n.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := n.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("node: http server stopped", "err", err)
		}
	}()
	return nil
}

// Ready says why the node cannot enforce yet (joining, replaying the registry, no leader known,
// removed), or nil once it can: what /readyz answers.
func (n *Node) Ready() error { return n.ready() }

// ready says why the node cannot enforce yet, or nil. The reason is the one /readyz and the
// admin API give; a removal wraps consensus.ErrRemoved.
func (n *Node) ready() error {
	if n.removedAtStart != nil {
		return n.removedAtStart
	}
	cons := n.consensusNode()
	if cons == nil {
		return errors.New("registry not open")
	}
	if r, ok := cons.Removed(); ok {
		return &consensus.RemovedError{Removal: r}
	}
	initialised := false
	cons.Read(func(r *identity.Registry) { initialised = r.ClusterID() != identity.ClusterID{} })
	applied, target, ok := cons.Replay()
	if !ok {
		return fmt.Errorf("replaying the registry (applied %d of %d)", applied, target)
	}
	switch {
	case !initialised:
		if err := cons.JoinProblem(); err != nil {
			return fmt.Errorf("joining: %w", err)
		}
		return errors.New("genesis not applied yet")
	case cons.Leader() == "":
		return errors.New("no raft leader known")
	case n.views.Current() == nil:
		return errors.New("no registry view yet")
	}
	// The gaters decide from the view, which the enforcer rebuilds after the registry applies:
	// ready once it holds what the replay brought back (min: the replay target can be a raft
	// configuration entry, which the registry never applies).
	if v, want := n.views.Current().Index(), min(cons.AppliedIndex(), target); v < want {
		return fmt.Errorf("building the enforcement view (at %d of %d)", v, want)
	}
	return nil
}
