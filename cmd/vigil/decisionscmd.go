package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/node/admin/adminv1"
)

// newDecisionsCmd is `vigil decisions list`: the collective-response decisions of a node.
func newDecisionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "decisions",
		Short: "Show the collective-response decisions a node took",
		Args:  adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("decisions: name a subcommand (list)")
		},
	}
	f := &adminFlags{}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the decisions that changed an agent's response step, oldest first (the last 1024)",
		Long: `list asks the node at --node/--socket for the response decisions it took from the anomaly signals
of the mesh (alert, throttle, quarantine, revoke), oldest first. Decisions are kept in memory: a
restarted node starts an empty list. See docs/gossip.md.`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.ListDecisions(ctx, connect.NewRequest(&adminv1.ListDecisionsRequest{}))
			if err != nil {
				return adminCall("decisions list", err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			return printDecisions(cmd.OutOrStdout(), resp.Msg.Decisions)
		},
	}
	f.register(list, false)
	cmd.AddCommand(list)
	return cmd
}

func printDecisions(w io.Writer, ds []*adminv1.Decision) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tACTION\tREPORTERS\tSIGNALS\tMAX SCORE\tUNTIL\tFLAGS")
	for _, d := range ds {
		until := "-"
		if d.Until != nil {
			until = d.Until.AsTime().UTC().Format(time.RFC3339)
		}
		flags := ""
		if d.Escalated {
			flags += "escalated "
		}
		if d.DryRun {
			flags += "dry-run"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f\t%s\t%s\n", d.Agent, d.Action, d.Reporters, d.Signals, d.MaxScore, until, flags)
	}
	return tw.Flush()
}
