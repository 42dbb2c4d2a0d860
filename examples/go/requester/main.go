// Command requester is an example Vigil agent: it attaches to a node with the Go SDK and sends
// messages naming a capability to another agent, printing each receipt or refusal.
//
//	go run ./examples/go/requester -key requester.key -nodes "$VIGIL_NODES" -to responder -n 5
//
// See examples/README.md for the whole walk-through against `vigil dev`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/vigil-mesh/vigil/agent"
)

func main() {
	keyPath := flag.String("key", envOr("VIGIL_AGENT_KEY", "requester.key"), "agent key file (created if missing) [$VIGIL_AGENT_KEY]")
	nodes := flag.String("nodes", os.Getenv("VIGIL_NODES"), "comma-separated node multiaddrs with /p2p/<id> [$VIGIL_NODES]")
	security := flag.String("security", "tls", "tls or noise: the nodes' auth.method")
	to := flag.String("to", "responder", "destination agent (name or peer ID)")
	capability := flag.String("capability", "ask", "capability the messages name")
	n := flag.Int("n", 5, "messages to send")
	wait := flag.Duration("wait", 30*time.Second, "how long to wait for a node to accept this agent")
	flag.Parse()

	key, err := agent.LoadOrCreateKey(*keyPath)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("requester: agent ID %s\n", key.ID())
	cfg := agent.DefaultConfig()
	cfg.Key, cfg.Security = key, *security
	for _, a := range strings.Split(*nodes, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Nodes = append(cfg.Nodes, a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait)
	defer cancel()
	c, err := agent.Connect(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Printf("requester: attached to %s as %s\n", c.Registration().Node, c.Registration().Name)

	failed := false
	for i := range *n {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		rc, err := c.Send(sctx, *to, *capability, []byte(fmt.Sprintf("question %d", i+1)))
		scancel()
		var refused *agent.RefusedError
		switch {
		case errors.As(err, &refused):
			fmt.Printf("requester: refused at %s: %s (%s): %s\n", refused.Hop, refused.Code, refused.Rule, refused.Reason)
			failed = true
		case err != nil:
			fmt.Printf("requester: %v\n", err)
			failed = true
		default:
			fmt.Printf("requester: delivered %s in %s\n", rc.ID, rc.Latency.Round(time.Microsecond))
		}
	}
	if failed {
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
