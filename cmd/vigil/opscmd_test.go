package main

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

func keyID(t *testing.T, path string) string {
	t.Helper()
	k, err := identity.LoadKeyFile(path, identity.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public().ID().String()
}

func newID(t *testing.T) string {
	t.Helper()
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID().String()
}

func must(t *testing.T, want int, out string, code int, contains ...string) {
	t.Helper()
	if code != want {
		t.Fatalf("exit %d, want %d:\n%s", code, want, out)
	}
	for _, c := range contains {
		if !strings.Contains(out, c) {
			t.Fatalf("output lacks %q:\n%s", c, out)
		}
	}
}

// TestMOfNApproval is the 2-of-3 flow end to end against a real node: one signature is refused
// with the way forward; --out, approve, submit succeeds; a duplicate approval is refused; the
// audit history shows both signers.
func TestMOfNApproval(t *testing.T) {
	_, _, keys, sock := adminCluster(t, []string{"alice", "bob", "carol"}, 2)
	as := func(key string, args ...string) (string, int) {
		return runAdmin(t, append(args, "--socket", sock, "--key", key)...)
	}
	dave := newID(t)
	file := filepath.Join(t.TempDir(), "add-dave.json")

	out, code := as(keys[0], "operators", "add", "dave", "--operator-id", dave)
	must(t, exitError, out, code, "insufficient signatures", "needs 2 distinct operator signatures", "--out FILE", "vigil approve FILE", "vigil submit FILE")

	out, code = as(keys[0], "operators", "add", "dave", "--operator-id", dave, "--out", file)
	must(t, exitOK, out, code, "1 of 2 signatures needed", "vigil approve "+file)

	out, code = as(keys[0], "approve", file)
	must(t, exitError, out, code, "already signed")

	out, code = runAdmin(t, "submit", file, "--socket", sock)
	must(t, exitError, out, code, "1 signature(s)", "are not enough", "vigil approve "+file)

	out, code = as(keys[1], "approve", file, "--show")
	must(t, exitOK, out, code, "add-operator", "add operator dave ("+dave+")", "alice ("+keyID(t, keys[0])+")", "1 of 2 needed")

	out, code = as(keys[1], "approve", file)
	must(t, exitOK, out, code, "bob ("+keyID(t, keys[1])+")", "2 of 2 needed", "vigil submit "+file)

	out, code = as(keys[1], "approve", file)
	must(t, exitError, out, code, "already signed")

	out, code = runAdmin(t, "submit", file, "--socket", sock)
	must(t, exitOK, out, code, "add operator dave", "applied at index")

	out, code = runAdmin(t, "operators", "list", "--socket", sock)
	must(t, exitOK, out, code, "dave", "threshold: 2 of 4")

	out, code = runAdmin(t, "audit", "--principal", "dave", "-o", "json", "--socket", sock)
	must(t, exitOK, out, code)
	var audit struct {
		Entries []struct {
			Kind    string
			Signers []string
		}
	}
	if err := json.Unmarshal([]byte(out), &audit); err != nil || len(audit.Entries) != 1 {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	e := audit.Entries[0]
	if e.Kind != "add-operator" || len(e.Signers) != 2 || e.Signers[0] != keyID(t, keys[0]) || e.Signers[1] != keyID(t, keys[1]) {
		t.Fatalf("audit entry %+v, want add-operator signed by alice and bob", e)
	}

	out, code = runAdmin(t, "audit", "--principal", "dave", "--socket", sock)
	must(t, exitOK, out, code, "add-operator", "alice,bob")
	out, code = runAdmin(t, "audit", "dave", "--socket", sock)
	must(t, exitOK, out, code, "add-operator", "alice,bob")
	out, code = runAdmin(t, "audit", "dave", "--principal", "erin", "--socket", sock)
	must(t, exitUsage, out, code, "name different principals")

	// Submitting the same file again is a replay.
	out, code = runAdmin(t, "submit", file, "--socket", sock)
	must(t, exitError, out, code, "replay")
}

func TestApproveRefusals(t *testing.T) {
	_, _, keys, sock := adminCluster(t, []string{"alice", "bob"}, 2)
	_, _, otherKeys, otherSock := adminCluster(t, []string{"zed"}, 1)
	dir := t.TempDir()

	// A command for another cluster.
	foreign := filepath.Join(dir, "foreign.json")
	out, code := runAdmin(t, "response", "quorum", "3", "--out", foreign, "--socket", otherSock, "--key", otherKeys[0])
	must(t, exitOK, out, code)
	out, code = runAdmin(t, "approve", foreign, "--socket", sock, "--key", keys[1])
	must(t, exitError, out, code, "is a command for cluster", "but the node is in cluster")

	// An expired one: issued longer ago than the registry accepts.
	file := filepath.Join(dir, "q.json")
	out, code = runAdmin(t, "response", "quorum", "3", "--out", file, "--socket", sock, "--key", keys[0])
	must(t, exitOK, out, code)
	c, _, err := readApprovalFile(file)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := identity.LoadKeyFile(keys[0], identity.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	old, err := identity.NewCommand(c.ClusterID, &identity.SetRevokeQuorum{Quorum: 3}, time.Now().Add(-commandLifetime-time.Minute), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	old.Sign(alice)
	expired := filepath.Join(dir, "expired.json")
	if _, err := writeApprovalFile(expired, old); err != nil {
		t.Fatal(err)
	}
	out, code = runAdmin(t, "approve", expired, "--socket", sock, "--key", keys[1])
	must(t, exitError, out, code, "expired at", "create it again with --out")
	out, code = runAdmin(t, "submit", expired, "--socket", sock)
	must(t, exitError, out, code, "expired at")

	// An edited description.
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	edited := filepath.Join(dir, "edited.json")
	if err := os.WriteFile(edited, []byte(strings.Replace(string(b), "to 3 nodes", "to 1 nodes", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runAdmin(t, "approve", edited, "--socket", sock, "--key", keys[1])
	must(t, exitError, out, code, "the file was edited")

	// Not an approval file; a key that is not an operator.
	out, code = runAdmin(t, "approve", keys[0], "--socket", sock, "--key", keys[1])
	must(t, exitError, out, code, "not an approval file")
	out, code = runAdmin(t, "approve", file, "--socket", sock, "--key", otherKeys[0])
	must(t, exitError, out, code, "is not an operator of cluster")

	// The untouched file still completes.
	out, code = runAdmin(t, "approve", file, "--socket", sock, "--key", keys[1])
	must(t, exitOK, out, code, "2 of 2 needed")
	out, code = runAdmin(t, "submit", file, "--socket", sock)
	must(t, exitOK, out, code, "automated revocation quorum to 3")
	out, code = runAdmin(t, "response", "--socket", sock)
	must(t, exitOK, out, code, "revoke quorum: 3 nodes")
}

const goodPolicy = `# cluster policy
monitoring:
  enabled: true
  policies:
    - metric: cpu_usage
      threshold: 80%
      action: alert
threat_detection:
  models:
    - type: anomaly_detection
      algorithm: ngram
response:
  revoke_quorum: 2
`

func TestPolicyCommands(t *testing.T) {
	_, _, keys, sock := adminCluster(t, []string{"alice"}, 1)
	on := []string{"--socket", sock, "--key", keys[0]}
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(goodPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("monitoring:\n  enabled: false\nresponse:\n  revoke_quorum: 0\n  windw: 5m\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	out, code := runAdmin(t, "policy", "lint", good)
	must(t, exitOK, out, code, good+": ok")
	out, code = runAdmin(t, "policy", "lint", bad, good)
	must(t, exitError, out, code, bad+":2: monitoring.enabled:", bad+":4: response.revoke_quorum:", bad+":5: response.windw: unknown key", good+": ok")
	out, code = runAdmin(t, "policy", "lint", "-o", "json", bad)
	must(t, exitError, out, code, `"line": 4`, `"key": "response.revoke_quorum"`)
	out, code = runAdmin(t, "policy", "lint")
	must(t, exitUsage, out, code)

	out, code = runAdmin(t, append([]string{"policy", "show"}, on...)...)
	must(t, exitOK, out, code, "no policy applied yet", "monitoring:")

	out, code = runAdmin(t, append([]string{"policy", "apply", bad}, on...)...)
	must(t, exitError, out, code, "3 problem(s); nothing was sent", bad+":2: monitoring.enabled")
	out, code = runAdmin(t, append([]string{"policy", "show", "--version"}, on...)...)
	must(t, exitOK, out, code)
	if strings.TrimSpace(out) != "0" {
		t.Fatalf("version after a refused apply: %q", out)
	}

	out, code = runAdmin(t, append([]string{"policy", "apply", good}, on...)...)
	must(t, exitOK, out, code, "version 1", "applied at index")
	out, code = runAdmin(t, append([]string{"policy", "apply", good}, on...)...)
	must(t, exitOK, out, code, "version 2")
	out, code = runAdmin(t, append([]string{"policy", "apply", good, "--version", "7"}, on...)...)
	must(t, exitError, out, code, "version", "want 3")
	out, code = runAdmin(t, append([]string{"policy", "show"}, on...)...)
	must(t, exitOK, out, code, "# policy version 2", goodPolicy)
}

func TestResponseAgentAndAuditCommands(t *testing.T) {
	_, _, keys, sock := adminCluster(t, []string{"alice"}, 1)
	on := []string{"--socket", sock, "--key", keys[0]}
	run := func(args ...string) (string, int) { return runAdmin(t, append(args, on...)...) }

	out, code := run("response")
	must(t, exitOK, out, code, "automated response: disabled")
	out, code = run("response", "enable")
	must(t, exitOK, out, code, "applied at index")
	out, code = run("response", "-o", "json")
	must(t, exitOK, out, code)
	var pol struct{ AutomatedResponse bool }
	if err := json.Unmarshal([]byte(out), &pol); err != nil || !pol.AutomatedResponse {
		t.Fatalf("response -o json: %v\n%s", err, out)
	}
	out, code = run("response", "disable") // M-of-N, and M is 1 here
	must(t, exitOK, out, code)
	out, code = run("response", "quorum", "zero")
	must(t, exitUsage, out, code, "want a whole number")

	id1, id2, id3 := newID(t), newID(t), newID(t)
	out, code = run("agent", "register", "worker", "--agent-id", id1, "--ttl", "1h")
	must(t, exitOK, out, code)
	out, code = run("agent", "rotate-key", "worker", "--new-id", id2)
	must(t, exitOK, out, code, "applied at index")
	out, code = run("agent", "show", "worker")
	must(t, exitOK, out, code, id2)
	out, code = run("agent", "reinstate", "worker", "--agent-id", id3, "--ttl", "1h")
	must(t, exitError, out, code) // not revoked: refused by the registry
	out, code = run("agent", "revoke", "worker", "--reason", "test")
	must(t, exitOK, out, code)
	out, code = run("agent", "reinstate", "worker", "--agent-id", id3, "--ttl", "1h")
	must(t, exitOK, out, code, "applied at index")
	out, code = run("agent", "show", "worker")
	must(t, exitOK, out, code, id3, "active")
	out, code = run("agent", "rotate-key", "worker", "--new-id", "nonsense")
	must(t, exitUsage, out, code, "--new-id")

	out, code = run("audit", "--since", "1h", "--principal", "worker")
	must(t, exitOK, out, code, "register-agent", "rotate-agent-key", "revoke-agent", "reinstate-agent")
	// --limit shows the newest entries, oldest first, and says on stderr that others matched.
	stdout, stderr, code := runAdminSplit(t, append([]string{"audit", "--limit", "2", "-o", "json"}, on...)...)
	must(t, exitOK, stdout+stderr, code)
	var a struct {
		Entries []struct{ Seq, Kind string }
		Matched string
	}
	if err := json.Unmarshal([]byte(stdout), &a); err != nil || len(a.Entries) != 2 || a.Entries[1].Kind != "reinstate-agent" ||
		a.Entries[0].Kind != "revoke-agent" {
		t.Fatalf("audit --limit 2: %v %s", err, stdout)
	}
	if !strings.Contains(stderr, "showing the newest 2 of "+a.Matched+" entries") {
		t.Fatalf("audit --limit 2: no note on stderr: %q", stderr)
	}
	// Pages of 1000 from the newest end: a limit above one page reads them all.
	stdout, stderr, code = runAdminSplit(t, append([]string{"audit", "--limit", "5000"}, on...)...)
	must(t, exitOK, stdout+stderr, code, "genesis", "reinstate-agent")
	if stderr != "" {
		t.Fatalf("audit --limit 5000 left entries out: %q", stderr)
	}
	out, code = run("audit", "--until", "1h")
	must(t, exitOK, out, code)
	if strings.Contains(out, "worker") {
		t.Fatalf("audit --until 1h ago shows today's entries:\n%s", out)
	}
	out, code = run("audit", "--since", "yesterday")
	must(t, exitUsage, out, code, "RFC 3339")
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"1h": now.Add(-time.Hour), "90m": now.Add(-90 * time.Minute), "0s": now,
		"2026-11-01T00:00:00Z": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1h", "yesterday", "2026-11-01"} {
		if _, err := parseWhen(in, now); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		out, code := runAdmin(t, "completion", sh)
		must(t, exitOK, out, code, "vigil")
	}
}

func TestMembersLastContact(t *testing.T) {
	_, _, keys, sock := adminCluster(t, []string{"alice"}, 1)
	out, code := runAdmin(t, "members", "--socket", sock)
	must(t, exitOK, out, code, "LAST CONTACT", "(this node)")
	out, code = runAdmin(t, "members", "-o", "json", "--socket", sock)
	must(t, exitOK, out, code)
	var ms struct {
		Members []struct{ LastContactMs string }
	}
	if err := json.Unmarshal([]byte(out), &ms); err != nil || len(ms.Members) != 1 || ms.Members[0].LastContactMs != "0" {
		t.Fatalf("members -o json: %v\n%s", err, out)
	}
	// A node admitted but never started: never heard from, so "unknown", not a made-up time.
	out, code = runAdmin(t, "members", "admit", "ghost", "--node-id", newID(t), "--non-voter",
		"--addr", "/ip4/127.0.0.1/tcp/9", "--socket", sock, "--key", keys[0])
	must(t, exitOK, out, code)
	out, code = runAdmin(t, "members", "--socket", sock)
	must(t, exitOK, out, code, "ghost")
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "ghost") && !strings.HasSuffix(strings.TrimSpace(line), "unknown") {
			t.Fatalf("ghost's last contact: %q", line)
		}
	}
}
