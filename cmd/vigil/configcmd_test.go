package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/node/config"
)

// runConfig executes a config command tree in-process (root.go wires newConfigCmd in; this
// test does not depend on it).
func runConfig(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	root := &cobra.Command{Use: "vigil", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newConfigCmd())
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	if err := root.ExecuteContext(context.Background()); err != nil {
		return out.String() + err.Error(), exitCode(err)
	}
	return out.String(), exitOK
}

func TestConfigDefaultLintsCleanAndLoads(t *testing.T) {
	out, code := runConfig(t, "config", "default")
	if code != exitOK {
		t.Fatalf("config default: code %d: %s", code, out)
	}
	path := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	lint, code := runConfig(t, "config", "lint", path)
	if code != exitOK || lint != path+": ok\n" {
		t.Fatalf("lint of the default file: code %d:\n%s", code, lint)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, config.DefaultConfig()) {
		t.Fatalf("default file loads to\n%+v\nwant\n%+v", c, config.DefaultConfig())
	}
}

func TestConfigLint(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"good.yaml":  "node:\n  name: depot-1\n",
		"warn.yaml":  "monitoring:\n  enabled: true\n",
		"basic.yaml": "node:\n  name: depot-1\nauth:\n  method: basic\n  username: admin\n  password: s3cret\n  methd: x\n",
		"yaml.yaml":  "node: [\n",
	}
	for name, s := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name  string
		args  []string
		code  int
		lines []string // exact output lines, in order, before the error text
	}{
		{"clean", []string{p("good.yaml")}, exitOK, []string{p("good.yaml") + ": ok"}},
		{"warning only", []string{p("warn.yaml")}, exitOK, []string{
			p("warn.yaml") + ":1: monitoring: warning: monitoring belongs in the cluster policy (vigil policy apply), not in the node configuration; the node ignores it",
			p("warn.yaml") + ": ok",
		}},
		{"every problem at once", []string{p("good.yaml"), p("basic.yaml")}, exitError, []string{
			p("good.yaml") + ": ok",
			p("basic.yaml") + ":4: auth.method: basic sends a shared password; Vigil authenticates every node by its own key: use mutual_tls (libp2p TLS 1.3) or noise",
			p("basic.yaml") + ":5: auth.username: username is a shared secret; Vigil authenticates every node by its own key: remove it and use auth.method: mutual_tls (libp2p TLS 1.3) or noise, with auth.key",
			p("basic.yaml") + ":6: auth.password: password is a shared secret; Vigil authenticates every node by its own key: remove it and use auth.method: mutual_tls (libp2p TLS 1.3) or noise, with auth.key",
			p("basic.yaml") + ":7: auth.methd: unknown key; did you mean auth.method?",
		}},
		{"yaml error", []string{p("yaml.yaml")}, exitError, []string{p("yaml.yaml") + ":1: not valid YAML: did not find expected node content"}},
		{"missing file", []string{p("absent.yaml")}, exitError, []string{p("absent.yaml") + ": open " + p("absent.yaml") + ": no such file or directory"}},
		{"no file", nil, exitUsage, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runConfig(t, append([]string{"config", "lint"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("code %d, want %d:\n%s", code, tt.code, out)
			}
			got := strings.Split(out, "\n")
			if len(got) < len(tt.lines) || !slices.Equal(got[:len(tt.lines)], tt.lines) {
				t.Fatalf("output:\n%s\nwant lines:\n%s", out, strings.Join(tt.lines, "\n"))
			}
			if rest := strings.Join(got[len(tt.lines):], "\n"); tt.code == exitOK && rest != "" {
				t.Errorf("unexpected output after the expected lines: %q", rest)
			}
		})
	}
}

func TestConfigLintJSON(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(bad, []byte("auth:\n  method: basic\nresponse: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runConfig(t, "config", "lint", "-o", "json", good, bad)
	if code != exitError {
		t.Fatalf("code %d, want %d: %s", code, exitError, out)
	}
	var got []lintJSON
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(got) != 2 || got[0].File != bad || got[0].Line != 2 || got[0].Key != "auth.method" || got[0].Severity != "error" ||
		got[1].Key != "response" || got[1].Severity != "warning" {
		t.Fatalf("json problems: %+v", got)
	}
	out, code = runConfig(t, "config", "lint", "--output", "json", good)
	if code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Fatalf("clean file: code %d: %q", code, out)
	}
	if _, code := runConfig(t, "config", "lint", "--output", "yaml", good); code != exitUsage {
		t.Fatalf("--output yaml: code %d, want %d", code, exitUsage)
	}
}

func TestConfigHelpHasExamples(t *testing.T) {
	for _, args := range [][]string{{"config", "--help"}, {"config", "lint", "--help"}, {"config", "default", "--help"}} {
		out, code := runConfig(t, args...)
		if code != exitOK || !strings.Contains(out, "Examples:") {
			t.Errorf("%v: code %d, no examples:\n%s", args, code, out)
		}
	}
}

// TestWatchReady: vigil node prints each different reason it is not ready, then that it is.
func TestWatchReady(t *testing.T) {
	reasons := []error{errors.New("joining: not admitted"), errors.New("joining: not admitted"),
		errors.New("replaying the registry (applied 3 of 9)"), nil}
	i := 0
	var out strings.Builder
	watchReady(context.Background(), &out, "node-4", func() error {
		err := reasons[min(i, len(reasons)-1)]
		i++
		return err
	})
	want := "vigil node node-4 not ready: joining: not admitted\n" +
		"vigil node node-4 not ready: replaying the registry (applied 3 of 9)\n" +
		"vigil node node-4 ready\n"
	if out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}
