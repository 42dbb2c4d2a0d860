package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/identity/policy"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/alerts"
)

// newDecisionsCmd is `vigil decisions list|lift`: the collective-response decisions of a node,
// and an operator's lift of a throttle or quarantine.
func newDecisionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "decisions",
		Short: "List a node's collective-response decisions; lift a throttle or quarantine",
		Long: `decisions reads the response decisions the node at --node/--socket took from the anomaly signals of
the mesh (alert, throttle, quarantine, revoke) and the lifts operators made, stored under the node's
data directory (the newest 10,000, surviving a restart). Every node decides on its own: a lift
applies to the node it is sent to. See docs/gossip.md.`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("decisions: name a subcommand (list, lift)")
		},
	}
	cmd.AddCommand(newDecisionsListCmd(), newDecisionsLiftCmd())
	return cmd
}

func newDecisionsListCmd() *cobra.Command {
	f := &adminFlags{}
	var agentName, action, since string
	var limit uint32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the node's response decisions and lifts, newest first",
		Example: `  vigil decisions list
  vigil decisions list --agent planner-1 --action quarantine --since 1h -o json`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &adminv1.ListDecisionsRequest{Agent: agentName, Action: action, Limit: limit}
			if action != "" && !slices.Contains(alerts.DecisionActions, action) {
				return usagef("--action %q: want %s", action, strings.Join(alerts.DecisionActions, ", "))
			}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return usagef("--since %q: %v", since, err)
				}
				req.Since = timestamppb.New(t)
			}
			if err := checkLimit(limit); err != nil {
				return err
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.ListDecisions(ctx, connect.NewRequest(req))
			if err != nil {
				return adminCall("decisions list", err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			return printDecisions(cmd.OutOrStdout(), resp.Msg.Decisions)
		},
	}
	f.register(cmd, plainFlags)
	cmd.Flags().StringVar(&agentName, "agent", "", "only this agent's decisions")
	cmd.Flags().StringVar(&action, "action", "", "only decisions with this action: "+strings.Join(alerts.DecisionActions, ", "))
	cmd.Flags().StringVar(&since, "since", "", "only decisions since a duration ago (10m, 1h) or an RFC 3339 time")
	cmd.Flags().Uint32Var(&limit, "limit", 100, "newest decisions to show (at most 10000)")
	return cmd
}

// isStoreID reports whether s has the shape of an alert or decision ID (16 lowercase hex
// digits). An agent whose name has that shape is lifted through one of its decision IDs.
func isStoreID(s string) bool {
	if len(s) != 16 {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return !(r >= '0' && r <= '9') && !(r >= 'a' && r <= 'f') })
}

func newDecisionsLiftCmd() *cobra.Command {
	f := &adminFlags{}
	var reason string
	cmd := &cobra.Command{
		Use:   "lift AGENT|DECISION-ID --reason TEXT",
		Short: "End an agent's throttle or quarantine on one node and forget the signals counted so far",
		Long: `lift ends the throttle or quarantine of an agent on the node at --node/--socket at once: the agent
may reconnect, and the signals counted so far are forgotten, so only a fresh quorum of fresh
signals escalates again. Name the agent, or one of its decisions by ID (16 hex digits, from
vigil decisions list). The lift is recorded as a decision with who (your key's peer ID, or
"local" on the Unix socket), when and --reason.

A lift is per node: each node decides from the signals it hears, so lift on every node that
quarantined the agent (vigil decisions list --action quarantine on each, then lift with that
node's --node/--node-id). A revocation is never lifted: it is reversed in the registry by M-of-N
vigil agent reinstate.`,
		Example: `  vigil decisions lift planner-1 --reason "load test, not an attack"
  vigil decisions lift 000000000000002a --reason "false positive" --node 10.0.0.6:7401 --node-id 12D3KooW…`,
		Args: adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &adminv1.LiftDecisionRequest{Reason: reason}
			if isStoreID(args[0]) {
				req.DecisionId = args[0]
			} else if err := identity.ValidateName(args[0]); err != nil {
				return usagef("lift %q: neither an agent name nor a decision ID (16 hex digits): %v", args[0], err)
			} else {
				req.Agent = args[0]
			}
			if p := alerts.ReasonProblem(reason); p != "" {
				return usagef("--reason: %s (say why the lift is safe; it is recorded)", p)
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.LiftDecision(ctx, connect.NewRequest(req))
			if err != nil {
				return adminCall("decisions lift", err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			d := resp.Msg.Decision
			fmt.Fprintf(cmd.OutOrStdout(), "lifted the %s of agent %s on node %s (lift %s by %s; lifted decision %s)\n",
				d.Lifted, d.Agent, resp.Msg.Node, d.Id, d.By, orDash(d.LiftedId))
			return nil
		},
	}
	f.register(cmd, plainFlags)
	cmd.Flags().StringVar(&reason, "reason", "", "why the lift is safe (required; recorded with the lift)")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printDecisions(w io.Writer, ds []*adminv1.Decision) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tAGENT\tACTION\tREPORTERS\tSIGNALS\tMAX SCORE\tUNTIL\tDETAIL")
	for _, d := range ds {
		until := "-"
		if d.Until != nil {
			until = d.Until.AsTime().UTC().Format(time.RFC3339)
		}
		var detail []string
		if d.Escalated {
			detail = append(detail, "escalated")
		}
		if d.DryRun {
			detail = append(detail, "dry-run")
		}
		if d.Rate > 0 {
			detail = append(detail, fmt.Sprintf("%s burst %d", policy.FormatRate(d.Rate), d.Burst))
		}
		if d.Action == alerts.ActionLift {
			detail = append(detail, fmt.Sprintf("lifted %s %s by %s: %q", d.Lifted, orDash(d.LiftedId), d.By, d.Reason))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%.2f\t%s\t%s\n", d.Id, d.Time.AsTime().UTC().Format(time.RFC3339), d.Agent,
			d.Action, d.Reporters, d.Signals, d.MaxScore, until, strings.Join(detail, " "))
	}
	return tw.Flush()
}
