// Command responder is an example Vigil agent: it attaches to a node with the Go SDK, handles
// messages that name the capability "ask", and reports a tool_call event for each one.
//
//	go run ./examples/go/responder -key responder.key -nodes "$VIGIL_NODES"
//
// See examples/README.md for the whole walk-through against `vigil dev`.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-mesh/vigil/agent"
)

func main() {
	keyPath := flag.String("key", envOr("VIGIL_AGENT_KEY", "responder.key"), "agent key file (created if missing) [$VIGIL_AGENT_KEY]")
	nodes := flag.String("nodes", os.Getenv("VIGIL_NODES"), "comma-separated node multiaddrs with /p2p/<id> [$VIGIL_NODES]")
	security := flag.String("security", "tls", "tls or noise: the nodes' auth.method")
	flag.Parse()

	key, err := agent.LoadOrCreateKey(*keyPath)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("responder: agent ID %s (register it: vigil agent register responder --agent-id %s)\n", key.ID(), key.ID())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg := agent.DefaultConfig()
	cfg.Key, cfg.Security = key, *security
	cfg.Nodes = splitNodes(*nodes)
	c, err := agent.Connect(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	reg := c.Registration()
	fmt.Printf("responder: attached to %s as %s (capabilities %v)\n", reg.Node, reg.Name, reg.Capabilities)

	c.Handle("ask", func(ctx context.Context, m agent.Message) error {
		fmt.Printf("responder: %s from %s: %q\n", m.ID, m.From, m.Body)
		return c.Report(ctx, agent.Event{Kind: "tool_call", Name: "answer", Value: float64(len(m.Body)),
			Attrs: map[string]string{"from": m.From}})
	})
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-c.Notify():
			fmt.Printf("responder: %s %s %s\n", e.At.Format(time.TimeOnly), e.State, e.Reason)
		}
	}
}

func splitNodes(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
