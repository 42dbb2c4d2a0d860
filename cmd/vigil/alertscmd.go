package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-mesh/vigil/node/admin/adminv1"
)

// newAlertsCmd is `vigil alerts list|ack|resolve`: the detector alerts of the node at
// --node/--socket.
func newAlertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List, acknowledge and resolve the detector alerts of a node",
		Long: `alerts reads and handles the alerts the node at --node/--socket raised: policy rules, capability
checks and anomaly models, stored under the node's data directory. Acknowledging and resolving
record who did it and when in the alert; resolving with --false-positive also tells the detector,
which raises that agent's threshold for that model. See docs/detection.md.`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("alerts: name a subcommand (list, ack, resolve)")
		},
	}
	cmd.AddCommand(newAlertsListCmd(), newAlertsAckCmd(), newAlertsResolveCmd())
	return cmd
}

func newAlertsListCmd() *cobra.Command {
	f := &adminFlags{}
	var agentName, status, since string
	var limit uint32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the node's alerts, newest first",
		Example: `  vigil alerts list
  vigil alerts list --agent planner-1 --status open --since 1h -o json`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &adminv1.ListAlertsRequest{Agent: agentName, Status: status, Limit: limit}
			switch status {
			case "", "open", "acked", "resolved":
			default:
				return usagef("--status %q: want open, acked or resolved", status)
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
			resp, err := c.ListAlerts(ctx, connect.NewRequest(req))
			if err != nil {
				return adminCall("alerts list", err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			return printAlerts(cmd.OutOrStdout(), resp.Msg.Alerts)
		},
	}
	f.register(cmd, plainFlags)
	cmd.Flags().StringVar(&agentName, "agent", "", "only this agent's alerts")
	cmd.Flags().StringVar(&status, "status", "", "only alerts in this status: open, acked, resolved")
	cmd.Flags().StringVar(&since, "since", "", "only alerts since a duration ago (10m, 1h) or an RFC 3339 time")
	cmd.Flags().Uint32Var(&limit, "limit", 100, "newest alerts to show (at most 10000)")
	return cmd
}

func newAlertsAckCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "ack ID",
		Short: "Acknowledge an open alert (records who and when)",
		Args:  adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkAlertIDArg(args[0]); err != nil {
				return err
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.AckAlert(ctx, connect.NewRequest(&adminv1.AckAlertRequest{Id: args[0]}))
			if err != nil {
				return adminCall("alerts ack", err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "alert %s acknowledged by %s\n", resp.Msg.Alert.Id, resp.Msg.Alert.AckedBy)
			return nil
		},
	}
	f.register(cmd, plainFlags)
	return cmd
}

func newAlertsResolveCmd() *cobra.Command {
	f := &adminFlags{}
	var fp bool
	cmd := &cobra.Command{
		Use:   "resolve ID",
		Short: "Resolve an alert; --false-positive also tells the detector",
		Args:  adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkAlertIDArg(args[0]); err != nil {
				return err
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.ResolveAlert(ctx, connect.NewRequest(&adminv1.ResolveAlertRequest{Id: args[0], FalsePositive: fp}))
			if err != nil {
				return adminCall("alerts resolve", err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			a := resp.Msg.Alert
			fmt.Fprintf(cmd.OutOrStdout(), "alert %s resolved by %s (false positive: %t)\n", a.Id, a.ResolvedBy, a.FalsePositive)
			return nil
		},
	}
	f.register(cmd, plainFlags)
	cmd.Flags().BoolVar(&fp, "false-positive", false, "the alert was a false positive: raise the agent's threshold for that model")
	return cmd
}

func printAlerts(w io.Writer, as []*adminv1.Alert) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tAGENT\tMODEL\tSCORE\tACTION\tSTATUS\tEVIDENCE")
	for _, a := range as {
		st := a.Status
		if a.FalsePositive {
			st += " (false positive)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.4f\t%s\t%s\t%s\n", a.Id, a.Time.AsTime().UTC().Format(time.RFC3339), a.Agent,
			a.Model, a.Score, a.Action, st, a.Evidence)
	}
	return tw.Flush()
}

// checkAlertIDArg refuses an argument that cannot be an alert ID before any node is asked: a
// malformed ID is a mistake on the command line, not an alert the node lacks.
func checkAlertIDArg(id string) error {
	if !isStoreID(id) {
		return usagef("ID %q: an alert ID is 16 lowercase hex digits, as vigil alerts list shows it (e.g. 000000000000002a)", id)
	}
	return nil
}
