package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
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
)

// ---- policy ----

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check, apply and show the cluster policy document (monitoring, detection, response)",
		Long: `policy manages the cluster policy: one YAML document, signed by an operator, replicated to every
node and versioned. Every node refuses an invalid document the same way; lint and apply check it
here first and print every problem with its line. See docs/operations.md for the schema.`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("policy: name a subcommand (lint, apply, show)")
		},
	}
	cmd.AddCommand(newPolicyLintCmd(), newPolicyApplyCmd(), newPolicyShowCmd())
	return cmd
}

// lintProblem is one problem, as policy lint --output json prints it.
type lintProblem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Key     string `json:"key"`
	Message string `json:"message"`
}

// readPolicyFile reads and parses FILE; the problems come back one per line as FILE:LINE: KEY: MSG.
func readPolicyFile(path string) ([]byte, []lintProblem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, identity.MaxPolicySize+1))
	if err != nil {
		return nil, nil, err
	}
	if len(b) > identity.MaxPolicySize {
		return nil, []lintProblem{{File: path, Message: fmt.Sprintf("larger than %d bytes, the registry's limit", identity.MaxPolicySize)}}, nil
	}
	_, err = policy.Parse(b)
	var es policy.Errors
	if errors.As(err, &es) {
		out := make([]lintProblem, len(es))
		for i, e := range es {
			out[i] = lintProblem{File: path, Line: e.Line, Key: e.Path, Message: e.Msg}
		}
		return b, out, nil
	}
	return b, nil, err
}

func (p lintProblem) String() string {
	s := p.File + ":"
	if p.Line > 0 {
		s += strconv.Itoa(p.Line) + ":"
	}
	if p.Key != "" {
		s += " " + p.Key + ":"
	}
	return s + " " + p.Message
}

func newPolicyLintCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "lint FILE...",
		Short: "Report every problem in policy documents, with line numbers",
		Long: `lint checks each FILE exactly as every node's registry will (no node is needed) and prints every
problem at once, one a line, as FILE:LINE: KEY: MESSAGE. A clean file prints "FILE: ok".
Exit status: 0 when every file is valid, 1 when any is not, 2 on a usage error.`,
		Example: `  vigil policy lint policy.yaml
  vigil policy lint --output json policy.yaml | jq .`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("policy lint: name at least one FILE")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return usagef("--output %q: must be table or json", output)
			}
			all := []lintProblem{}
			bad := 0
			for _, path := range args {
				_, ps, err := readPolicyFile(path)
				if err != nil {
					ps = []lintProblem{{File: path, Message: err.Error()}}
				}
				if len(ps) > 0 {
					bad++
				}
				all = append(all, ps...)
				if output == "table" {
					for _, p := range ps {
						fmt.Fprintln(cmd.OutOrStdout(), p)
					}
					if len(ps) == 0 {
						fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
					}
				}
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(all); err != nil {
					return err
				}
			}
			if bad > 0 {
				return fmt.Errorf("policy lint: %d of %d file(s) invalid", bad, len(args))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func newPolicyApplyCmd() *cobra.Command {
	f := &adminFlags{}
	var version uint64
	cmd := &cobra.Command{
		Use:   "apply FILE",
		Short: "Sign a policy document and replicate it as the next version",
		Long: `apply checks FILE first (like policy lint: every problem with its line; nothing is sent when
there is one), then signs it with your operator key as version current+1 (or --version N, which
the registry accepts only if it is current+1: a guard against two operators racing) and sends it.
The document is stored as written, comments included.`,
		Example: `  vigil policy apply policy.yaml
  vigil policy apply policy.yaml --version 4     # fail unless the cluster is at version 3
  vigil policy apply policy.yaml --out p.json    # sign only, send later with vigil submit`,
		Args: adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, ps, err := readPolicyFile(args[0])
			if err != nil {
				return fmt.Errorf("policy apply: %w", err)
			}
			if len(ps) > 0 {
				for _, p := range ps {
					fmt.Fprintln(cmd.ErrOrStderr(), p)
				}
				return fmt.Errorf("policy apply: %s has %d problem(s); nothing was sent", args[0], len(ps))
			}
			if !cmd.Flags().Changed("version") {
				c, err := f.dial()
				if err != nil {
					return err
				}
				ctx, cancel := adminCtx(cmd)
				defer cancel()
				cur, err := c.GetPolicy(ctx, connect.NewRequest(&adminv1.GetPolicyRequest{Consistent: true}))
				if err != nil {
					return adminCall("policy apply", err)
				}
				version = cur.Msg.Version + 1
			}
			return signAndSend(cmd, f, fmt.Sprintf("policy apply (version %d)", version),
				&identity.SetPolicy{Version: version, Document: doc}, client.Client.ApplyPolicy)
		},
	}
	f.register(cmd, signedFlags)
	cmd.Flags().Uint64Var(&version, "version", 0, "the version to apply; must be the current version + 1 (default: current + 1)")
	return cmd
}

func newPolicyShowCmd() *cobra.Command {
	f := &adminFlags{}
	var onlyVersion bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the cluster's current policy document and version",
		Example: `  vigil policy show > policy.yaml
  vigil policy show --version
  vigil policy show --output json`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.GetPolicy(ctx, connect.NewRequest(&adminv1.GetPolicyRequest{Consistent: f.consistent}))
			if err != nil {
				return adminCall("policy show", err)
			}
			m := resp.Msg
			w := cmd.OutOrStdout()
			switch {
			case f.output == "json":
				return printJSON(w, m)
			case onlyVersion:
				_, err = fmt.Fprintln(w, m.Version)
				return err
			case m.Version == 0:
				fmt.Fprintf(w, "# no policy applied yet: nodes run the defaults below\n")
				_, err = w.Write(policy.Default().Canonical())
				return err
			}
			fmt.Fprintf(w, "# policy version %d\n", m.Version)
			_, err = w.Write(m.Document)
			return err
		},
	}
	f.register(cmd, readFlags)
	cmd.Flags().BoolVar(&onlyVersion, "version", false, "print only the version number")
	return cmd
}

// ---- operators ----

func newOperatorsCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "operators",
		Short: "List operators; add or remove one, or set the threshold M (M-of-N)",
		Long: `operators manages who may sign commands. Adding or removing an operator and changing the
threshold M are M-of-N operations: they need M distinct operator signatures (see vigil approve).`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("operators: name a subcommand (list, add, remove, threshold)")
		},
	}
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the operators and the threshold M",
		Example: `  vigil operators list --output json`,
		Args:    adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.ListOperators(ctx, connect.NewRequest(&adminv1.ListOperatorsRequest{Consistent: f.consistent}))
			if err != nil {
				return adminCall("operators list", err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID")
			for _, o := range resp.Msg.Operators {
				fmt.Fprintf(tw, "%s\t%s\n", o.Name, o.Id)
			}
			fmt.Fprintf(tw, "threshold: %d of %d\n", resp.Msg.Threshold, len(resp.Msg.Operators))
			return tw.Flush()
		},
	}
	f.register(list, readFlags)
	cmd.AddCommand(list, newOperatorsAddCmd(), newOperatorsRemoveCmd(), newOperatorsThresholdCmd())
	return cmd
}

func newOperatorsAddCmd() *cobra.Command {
	f := &adminFlags{}
	var opID string
	cmd := &cobra.Command{
		Use:   "add NAME --operator-id ID",
		Short: "Add an operator (M-of-N)",
		Example: `  vigil keygen --out carol.key --role operator      # carol: prints her ID
  vigil operators add carol --operator-id 12D3KooW… --out add-carol.json
  vigil approve add-carol.json --key bob.key && vigil submit add-carol.json`,
		Args: adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := identity.ValidateName(args[0]); err != nil {
				return usagef("NAME: %v", err)
			}
			id, err := identity.ParseID(opID)
			if err != nil {
				return usagef("--operator-id %q: %v", opID, err)
			}
			return signAndSend(cmd, f, "operators add", &identity.AddOperator{Operator: identity.OperatorEntry{Name: args[0], Key: id.PublicKey()}},
				client.Client.AddOperator)
		},
	}
	f.register(cmd, signedFlags)
	cmd.Flags().StringVar(&opID, "operator-id", "", "the new operator's peer ID (printed by vigil keygen --role operator)")
	return cmd
}

func newOperatorsRemoveCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove an operator (M-of-N); refused if fewer than M operators would remain",
		Example: `  vigil operators remove mallory --out rm-mallory.json`,
		Args:    adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := identity.ValidateName(args[0]); err != nil {
				return usagef("NAME: %v", err)
			}
			return signAndSend(cmd, f, "operators remove", &identity.RemoveOperator{Name: args[0]}, client.Client.RemoveOperator)
		},
	}
	f.register(cmd, signedFlags)
	return cmd
}

func newOperatorsThresholdCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:     "threshold M",
		Short:   "Set how many operator signatures M-of-N commands need (M-of-N itself)",
		Example: `  vigil operators threshold 2 --out m2.json`,
		Args:    adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := strconv.Atoi(args[0])
			if err != nil || m < 1 {
				return usagef("M %q: want a whole number of at least 1", args[0])
			}
			return signAndSend(cmd, f, "operators threshold", &identity.SetThreshold{Threshold: m}, client.Client.SetThreshold)
		},
	}
	f.register(cmd, signedFlags)
	return cmd
}

// ---- audit ----

// parseWhen reads an RFC 3339 time or a duration before now ("1h" = an hour ago).
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (90m, 24h)", s)
	}
	return now.Add(-d), nil
}

func newAuditCmd() *cobra.Command {
	f := &adminFlags{}
	var principal, since, until string
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [NAME|ID]",
		Short: "Show the registry's audit history: who signed what, when",
		Long: `audit prints the replicated audit history, oldest first: every applied command with its
signers and subjects. NAME|ID (or --principal) keeps the entries signed by or about that principal.
--since and --until take an RFC 3339 time or a duration ago (1h, 30m).
--limit shows the newest entries of the selection (100 by default), still oldest first; when
older ones were left out, a note on stderr says how many matched (use --until or --since for them).`,
		Example: `  vigil audit --since 24h
  vigil audit planner-1 --limit 20
  vigil audit --principal planner-1 --limit 20
  vigil audit --since 2026-11-01T00:00:00Z --until 2026-11-02T00:00:00Z --output json`,
		Args: adminArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			if len(args) == 1 {
				if principal != "" && principal != args[0] {
					return usagef("audit: %q and --principal %q name different principals; give one", args[0], principal)
				}
				principal = args[0]
			}
			req := &adminv1.AuditRequest{Consistent: f.consistent, Principal: principal}
			if since != "" {
				t, err := parseWhen(since, now)
				if err != nil {
					return usagef("--since %v", err)
				}
				req.From = timestamppb.New(t)
			}
			if until != "" {
				t, err := parseWhen(until, now)
				if err != nil {
					return usagef("--until %v", err)
				}
				req.To = timestamppb.New(t)
			}
			if limit < 1 {
				return usagef("--limit %d: must be at least 1", limit)
			}
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			// The newest --limit entries: pages of at most 1000 from the newest end, each page
			// before the oldest entry already read; printed oldest first.
			all := &adminv1.AuditResponse{}
			req.Newest = true
			for len(all.Entries) < limit {
				req.Limit = uint32(min(limit-len(all.Entries), 1000))
				resp, err := c.Audit(ctx, connect.NewRequest(req))
				if err != nil {
					return adminCall("audit", err)
				}
				all.Entries = append(resp.Msg.Entries, all.Entries...)
				all.Matched = max(all.Matched, resp.Msg.Matched)
				// A node may cap a page below 1000: stop when nothing older is left, by count.
				if len(resp.Msg.Entries) == 0 || uint64(len(all.Entries)) >= all.Matched {
					break
				}
				req.BeforeSeq = resp.Msg.Entries[0].Seq
			}
			if left := int(all.Matched) - len(all.Entries); left > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "audit: showing the newest %d of %d entries; use --since/--until/--limit for the others\n",
					len(all.Entries), all.Matched)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), all)
			}
			// Signers are peer IDs; show the current operators by name.
			names := map[string]string{}
			if ops, err := c.ListOperators(ctx, connect.NewRequest(&adminv1.ListOperatorsRequest{})); err == nil {
				for _, o := range ops.Msg.Operators {
					names[o.Id] = o.Name
				}
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tSIGNERS\tSUBJECTS\tDETAIL")
			for _, e := range all.Entries {
				signers := make([]string, len(e.Signers))
				for i, s := range e.Signers {
					if signers[i] = s; names[s] != "" {
						signers[i] = names[s]
					}
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.AsTime().UTC().Format(time.RFC3339), e.Kind,
					strings.Join(signers, ","), strings.Join(e.Subjects, ","), e.Detail)
			}
			return tw.Flush()
		},
	}
	f.register(cmd, readFlags)
	cmd.Flags().StringVar(&principal, "principal", "", "only entries signed by or about this name or peer ID")
	cmd.Flags().StringVar(&since, "since", "", "only entries at or after this time (RFC 3339, or a duration ago such as 1h)")
	cmd.Flags().StringVar(&until, "until", "", "only entries before this time (RFC 3339, or a duration ago)")
	cmd.Flags().IntVar(&limit, "limit", 100, "show the newest this many entries")
	return cmd
}

// ---- agent rotate-key / reinstate ----

func newAgentRotateKeyCmd() *cobra.Command {
	f := &adminFlags{}
	var newID string
	cmd := &cobra.Command{
		Use:   "rotate-key NAME|ID --new-id ID",
		Short: "Move an agent to a new key; the old key stops working everywhere",
		Example: `  vigil keygen --out planner-1.new.key        # on the agent's host: prints the new ID
  vigil agent rotate-key planner-1 --new-id 12D3KooW…`,
		Args: adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := identity.ParseID(newID)
			if err != nil {
				return usagef("--new-id %q: %v", newID, err)
			}
			name, err := agentName(cmd, f, args[0])
			if err != nil {
				return err
			}
			return signAndSend(cmd, f, "agent rotate-key", &identity.RotateAgentKey{Name: name, NewKey: id.PublicKey()},
				client.Client.RotateAgentKey)
		},
	}
	f.register(cmd, signedFlags)
	cmd.Flags().StringVar(&newID, "new-id", "", "the agent's new peer ID")
	return cmd
}

func newAgentReinstateCmd() *cobra.Command {
	f := &adminFlags{}
	var agentID string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "reinstate NAME|ID --agent-id ID --ttl D",
		Short: "Bring a revoked agent back under a fresh key (M-of-N)",
		Example: `  vigil agent reinstate planner-1 --agent-id 12D3KooW… --ttl 720h --out reinstate.json
  vigil approve reinstate.json --key bob.key && vigil submit reinstate.json`,
		Args: adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := identity.ParseID(agentID)
			if err != nil {
				return usagef("--agent-id %q: %v", agentID, err)
			}
			if ttl <= 0 {
				return usagef("--ttl: must be positive")
			}
			name, err := agentName(cmd, f, args[0])
			if err != nil {
				return err
			}
			return signAndSend(cmd, f, "agent reinstate", &identity.ReinstateAgent{Name: name, Key: id.PublicKey(),
				ExpiresAt: time.Now().Add(ttl).UTC().Truncate(time.Second)}, client.Client.ReinstateAgent)
		},
	}
	f.register(cmd, signedFlags)
	cmd.Flags().StringVar(&agentID, "agent-id", "", "the agent's fresh peer ID (a revoked key never comes back)")
	cmd.Flags().DurationVar(&ttl, "ttl", 30*24*time.Hour, "registration lifetime from now")
	return cmd
}

// ---- response ----

func newResponseCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "response",
		Short: "Show or change automated response: revocation by a quorum of nodes",
		Long: `response shows whether nodes may revoke an agent on their own (a command signed by revoke-quorum
distinct nodes whose signals name it) and the quorum. Enabling needs one operator; disabling and
changing the quorum are M-of-N (see vigil approve).`,
		Example: `  vigil response
  vigil response enable
  vigil response disable --out off.json
  vigil response quorum 3 --out q3.json`,
		Args: adminArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.dial()
			if err != nil {
				return err
			}
			ctx, cancel := adminCtx(cmd)
			defer cancel()
			resp, err := c.GetPolicy(ctx, connect.NewRequest(&adminv1.GetPolicyRequest{Consistent: f.consistent}))
			if err != nil {
				return adminCall("response", err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			state := "disabled"
			if resp.Msg.AutomatedResponse {
				state = "enabled"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "automated response: %s\nrevoke quorum: %d nodes\n", state, resp.Msg.RevokeQuorum)
			return nil
		},
	}
	f.register(cmd, readFlags)
	toggle := func(use string, enabled bool, short string) *cobra.Command {
		tf := &adminFlags{}
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  adminArgs(cobra.NoArgs),
			RunE: func(cmd *cobra.Command, _ []string) error {
				return signAndSend(cmd, tf, "response "+use, &identity.SetAutomatedResponse{Enabled: enabled},
					client.Client.SetAutomatedResponse)
			},
		}
		tf.register(c, signedFlags)
		return c
	}
	qf := &adminFlags{}
	quorum := &cobra.Command{
		Use:     "quorum N",
		Short:   "Set how many distinct nodes must sign an automated revocation (M-of-N)",
		Example: `  vigil response quorum 3 --out q3.json`,
		Args:    adminArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return usagef("N %q: want a whole number of at least 1", args[0])
			}
			return signAndSend(cmd, qf, "response quorum", &identity.SetRevokeQuorum{Quorum: n}, client.Client.SetRevokeQuorum)
		},
	}
	qf.register(quorum, signedFlags)
	cmd.AddCommand(toggle("enable", true, "Let nodes revoke agents automatically (one operator)"),
		toggle("disable", false, "Stop automated revocation (M-of-N)"), quorum)
	return cmd
}
