package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/node/config"
)

// newConfigCmd is `vigil config`: lint and default for the node configuration file.
func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check node configuration files, or print the default one",
		Long: `config works on the node configuration file (node.yaml) that vigil node reads.
Every key is optional; a missing key keeps its default. Unknown keys are errors.`,
		Example: `  vigil config default > node.yaml
  vigil config lint node.yaml`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newConfigLintCmd(), newConfigDefaultCmd())
	return cmd
}

func newConfigLintCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "lint FILE...",
		Short: "Report every problem in node configuration files",
		Long: `lint checks each FILE as vigil node would load it and prints every problem at once, one a
line, as FILE:LINE: KEY: MESSAGE, ordered by line. A clean file prints "FILE: ok".
Warnings (a policy section in the node file) are printed but do not fail.

Refused with the reason and what to use instead: auth.method: basic and any username or
password under auth (Vigil authenticates every node by its own key: use mutual_tls or noise),
monitoring or threat_detection with enabled: false unless allow_disabled: true is next to it.

With --output json it prints one JSON array of every problem of every file instead
({"file","line","key","message","severity"}; [] when all are clean).

Exit status: 0 when no file has an error, 1 when any has, 2 on a usage error.`,
		Example: `  vigil config lint /etc/vigil/node.yaml
  vigil config lint site-a/*.yaml

  # a file with a typo and basic auth:
  $ vigil config lint node.yaml
  node.yaml:7: auth.methd: unknown key; did you mean auth.method?
  node.yaml:9: auth.password: password is a shared secret; …

  vigil config lint --output json node.yaml | jq '.[] | select(.severity == "error")'`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("config lint: name at least one FILE")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "text":
				return runConfigLint(cmd.OutOrStdout(), args)
			case "json":
				return runConfigLintJSON(cmd.OutOrStdout(), args)
			}
			return usagef("config lint: --output %q: must be text or json", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// runConfigLint prints the problems of every file and fails (exit 1) if any is an error.
func runConfigLint(w io.Writer, files []string) error {
	bad := 0
	for _, f := range files {
		ps := config.Lint(f)
		for _, p := range ps {
			fmt.Fprintln(w, p.String())
		}
		if config.HasErrors(ps) {
			bad++
		} else {
			fmt.Fprintf(w, "%s: ok\n", f)
		}
	}
	if bad > 0 {
		return fmt.Errorf("config lint: %d of %d files have errors", bad, len(files))
	}
	return nil
}

// lintJSON is one problem in `config lint --output json`.
type lintJSON struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Key      string `json:"key"`
	Message  string `json:"message"`
	Severity string `json:"severity"`
}

func runConfigLintJSON(w io.Writer, files []string) error {
	out, bad := []lintJSON{}, 0
	for _, f := range files {
		ps := config.Lint(f)
		for _, p := range ps {
			out = append(out, lintJSON{p.File, p.Line, p.Key, p.Message, p.Severity.String()})
		}
		if config.HasErrors(ps) {
			bad++
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if bad > 0 {
		return fmt.Errorf("config lint: %d of %d files have errors", bad, len(files))
	}
	return nil
}

func newConfigDefaultCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "default",
		Short: "Print a fully commented configuration file holding the defaults",
		Long: `default prints the node configuration file with every key set to its default and a comment
saying what it does, its unit and what is allowed. Start a node's file from it.`,
		Example: `  vigil config default > /etc/vigil/node.yaml
  vigil config default | sed 's/name: node-1/name: depot-1/' > node.yaml && vigil config lint node.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(cmd.OutOrStdout(), config.DefaultFile)
			return err
		},
	}
}
