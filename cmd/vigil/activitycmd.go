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

// newAgentActivityCmd is `vigil agent activity NAME`: the agent's recent messages, refusals and
// reported events as the node it is attached to recorded them (its telemetry, not the registry).
func newAgentActivityCmd() *cobra.Command {
	f := &adminFlags{}
	var since string
	var limit uint32
	cmd := &cobra.Command{
		Use:   "activity NAME|ID",
		Short: "Show an agent's recent messages, refusals and events, from the node's telemetry",
		Long: `activity asks the node at --node/--socket for the telemetry it recorded about the agent: each
message the agent sent or received through that node, each refusal (with its code and the hop
that refused it) and each event the agent reported. Each node records only what its own agents
did, so ask the node the agent is attached to (the sender's node and the receiver's node each
record a message).`,
		Example: `  vigil agent activity planner-1
  vigil agent activity planner-1 --since 10m --limit 50 --output json
  vigil agent activity planner-1 --since 2026-01-02T15:04:05Z`,
		Args: adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &adminv1.AgentActivityRequest{Agent: args[0], Limit: limit}
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
			resp, err := c.AgentActivity(ctx, connect.NewRequest(req))
			if err != nil {
				return adminCall("agent activity", err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			return printActivity(cmd.OutOrStdout(), resp.Msg.Records)
		},
	}
	f.register(cmd, plainFlags)
	cmd.Flags().StringVar(&since, "since", "", "only records since a duration ago (10m, 1h) or an RFC 3339 time")
	cmd.Flags().Uint32Var(&limit, "limit", 100, "newest records to show (at most 10000)")
	return cmd
}

// maxListLimit is the most records, alerts or decisions a node returns in one answer.
const maxListLimit = 10_000

// checkLimit refuses a --limit the node would cut silently.
func checkLimit(limit uint32) error {
	if limit < 1 || limit > maxListLimit {
		return usagef("--limit %d: must be from 1 to %d", limit, maxListLimit)
	}
	return nil
}

// parseSince accepts a duration before now or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("negative duration")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not a duration (10m) or an RFC 3339 time")
	}
	return t, nil
}

func printActivity(w io.Writer, rs []*adminv1.ActivityRecord) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tACTION\tPEER\tBYTES\tLATENCY\tOUTCOME\tHOP")
	for _, r := range rs {
		lat := time.Duration(r.LatencySeconds * float64(time.Second)).Round(time.Microsecond)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Time.AsTime().UTC().Format(time.RFC3339Nano), r.Kind,
			r.Action, r.Peer, r.Bytes, lat, r.Outcome, r.Hop)
	}
	return tw.Flush()
}
