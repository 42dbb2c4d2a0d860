package main

import (
	"crypto/rand"
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
	"github.com/vigil-mesh/vigil/node/admin/client"
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
applies to the node it is sent to, or with --all-nodes, signed by an operator, to every node.
See docs/gossip.md.`,
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
	var allNodes bool
	cmd := &cobra.Command{
		Use:   "lift AGENT|DECISION-ID --reason TEXT [--all-nodes]",
		Short: "End an agent's throttle or quarantine on one node, or on every node, and forget the signals counted so far",
		Long: `lift ends the throttle or quarantine of an agent on the node at --node/--socket at once: the agent
may reconnect, and the signals counted so far are forgotten, so only a fresh quorum of fresh
signals escalates again. Name the agent, or one of its decisions by ID (16 hex digits, from
vigil decisions list). The lift is recorded as a decision with who (your key's peer ID, or
"local" on the Unix socket), when and --reason.

Each node decides from the signals it hears, so without --all-nodes a lift applies to that node
only. With --all-nodes the lift is signed with your operator key (--key) and the node forwards
it to every other admitted node; each verifies your signature itself, lifts and records the lift
as your operator name. A table shows each node's result: lifted, nothing_to_lift (none ran
there), refused or unreachable; the command fails (exit 1) if any node refused or was
unreachable. --all-nodes names the agent, never a decision ID (those are per node).

A revocation is never lifted: it is reversed in the registry by M-of-N vigil agent reinstate.`,
		Example: `  vigil decisions lift planner-1 --reason "load test, not an attack"
  vigil decisions lift planner-1 --reason "load test, not an attack" --all-nodes --key alice.key
  vigil decisions lift 000000000000002a --reason "false positive" --node 10.0.0.6:7401 --node-id 12D3KooW…`,
		Args: adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &adminv1.LiftDecisionRequest{Reason: reason}
			switch {
			case allNodes:
				if err := identity.ValidateName(args[0]); err != nil {
					return usagef("lift %q --all-nodes: not an agent name: %v", args[0], err)
				}
				req.Agent = args[0]
			case isStoreID(args[0]):
				req.DecisionId = args[0]
			default:
				if err := identity.ValidateName(args[0]); err != nil {
					return usagef("lift %q: neither an agent name nor a decision ID (16 hex digits): %v", args[0], err)
				}
				req.Agent = args[0]
			}
			if p := alerts.ReasonProblem(reason); p != "" {
				return usagef("--reason: %s (say why the lift is safe; it is recorded)", p)
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			if allNodes {
				if err := signLift(cmd, f, c, req); err != nil {
					return err
				}
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.LiftDecision(ctx, connect.NewRequest(req))
			if err != nil {
				return adminCall("decisions lift", err)
			}
			if allNodes {
				return printLiftAll(cmd.OutOrStdout(), f.output, req.Agent, resp.Msg)
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
	cmd.Flags().BoolVar(&allNodes, "all-nodes", false, "lift on every admitted node, signed with the operator key (--key)")
	return cmd
}

// signLift adds to req (agent and reason set) the same lift signed with the operator key for
// the node's cluster: every node verifies it.
func signLift(cmd *cobra.Command, f *adminFlags, c client.Client, req *adminv1.LiftDecisionRequest) error {
	const what = "decisions lift --all-nodes"
	key, err := f.operatorKey()
	if err != nil {
		return err
	}
	ctx, cancel := adminCtx(cmd)
	defer cancel()
	cid, err := fetchClusterID(ctx, c, what)
	if err != nil {
		return err
	}
	op, err := identity.NewLiftOp(cid, req.Agent, req.Reason, time.Now(), rand.Reader)
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", what, err)}
	}
	if err := op.Sign(key); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	req.SignedOp = op.Encode()
	return nil
}

// printLiftAll prints each node's result of an all-nodes lift, and fails (exit 1) when a node
// refused or was unreachable.
func printLiftAll(w io.Writer, output, agent string, m *adminv1.LiftDecisionResponse) error {
	if output == "json" {
		if err := printJSON(w, m); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "lift %s: %d of %d nodes answered without a failure\n", agent, len(m.Nodes)-int(m.Failed), len(m.Nodes))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tID\tRESULT\tDETAIL")
		for _, n := range m.Nodes {
			detail := n.Error
			if d := n.Decision; d != nil {
				detail = fmt.Sprintf("lifted %s %s (lift %s by %s)", d.Lifted, orDash(d.LiftedId), d.Id, d.By)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", orDash(n.NodeName), n.NodeId, n.Result, detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	var bad []string
	for _, n := range m.Nodes {
		if n.Result == "refused" || n.Result == "unreachable" {
			bad = append(bad, orDash(n.NodeName)+" ("+n.Result+")")
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("decisions lift --all-nodes: %d of %d nodes failed: %s", len(bad), len(m.Nodes), strings.Join(bad, ", "))
	}
	return nil
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
