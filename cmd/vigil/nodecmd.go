package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/node"
	"github.com/vigil-mesh/vigil/node/config"
)

func newNodeCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "node --config FILE",
		Short: "Run the Vigil node daemon",
		Long: `node runs one Vigil node: the libp2p host whose connection gater admits only the registry's
active agents, admitted nodes and operators; the node's replica of the registry (Raft); enforcement
that cuts off a revoked, quarantined or expired agent's live connections; the agent protocol with
periodic re-verification; and /metrics, /healthz and /readyz on the HTTP address.

The first node of a cluster is the one 'vigil init' created (its genesis lists it). Any other node
must be admitted by an operator before it starts, then joins through the addresses in 'join'.
Write a starting configuration with 'vigil config default' and check it with 'vigil config lint'.`,
		Example: `  vigil init --dir /var/lib/vigil
  vigil config default > /etc/vigil/node.yaml      # set node.data_dir: /var/lib/vigil
  vigil config lint /etc/vigil/node.yaml
  vigil node --config /etc/vigil/node.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usagef("node: --config is required (see vigil config default)")
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
				return fmt.Errorf("node: log.level: %w", err)
			}
			opts := &slog.HandlerOptions{Level: level}
			var h slog.Handler = slog.NewJSONHandler(os.Stderr, opts)
			if cfg.Log.Format == "text" {
				h = slog.NewTextHandler(os.Stderr, opts)
			}
			log := slog.New(h)
			n, err := node.Start(cfg, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "vigil node %s (%s) started; metrics and health on http://%s\n",
				cfg.Node.Name, n.ID(), n.HTTPAddr())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go watchReady(ctx, cmd.OutOrStdout(), cfg.Node.Name, n.Ready)
			<-ctx.Done()
			log.Info("node: stopping")
			return n.Close()
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "node configuration file (YAML)")
	return cmd
}

// watchReady prints when the node becomes ready, and each different reason it is not ready
// before that (joining, replaying the registry, not admitted, removed), so the terminal says
// what /readyz says.
func watchReady(ctx context.Context, out io.Writer, name string, ready func() error) {
	last := ""
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		err := ready()
		if err == nil {
			fmt.Fprintf(out, "vigil node %s ready\n", name)
			return
		}
		if err.Error() != last {
			last = err.Error()
			fmt.Fprintf(out, "vigil node %s not ready: %s\n", name, last)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
