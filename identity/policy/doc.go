// Package policy is the cluster policy document: the YAML that `vigil policy apply` signs and
// the registry replicates (identity.SetPolicy), read by every node's detector and responder.
//
// It is pure: it parses and validates bytes and renders a canonical form. It never reads the
// clock, the network or the disk, so every replica that parses the same bytes gets the same
// document or the same errors.
//
// Usage:
//
//	doc, err := policy.Parse(yamlBytes)
//	if err != nil {
//		var errs policy.Errors
//		errors.As(err, &errs) // every problem, each with its line, column and key path
//	}
//	canonical := doc.Canonical() // stable YAML; Parse(canonical) gives an equal document
//
// Invariants:
//   - Parse reports every problem at once, ordered by line; each names the line and the key
//     path (for example "line 7: monitoring.policies[0].action: unknown action \"page\"").
//   - A missing section or key keeps its Default() value; an empty document is Default().
//   - Refused: unknown keys, unknown metrics, actions, model types and algorithms; zero or
//     negative durations; revoke_quorum < 1; monitoring or threat_detection disabled unless
//     allow_disabled: true; YAML aliases and more than one YAML document.
//   - The input is capped at MaxSize bytes before it is parsed.
//   - Parse(d.Canonical()) equals d for every valid d.
package policy
