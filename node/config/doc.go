// Package config is the node configuration file (node.yaml) of `vigil node`: the Config struct,
// its defaults, validation, and a linter that reports every problem of a file at once with its
// line, for `vigil config lint`.
//
// Usage:
//
//	cfg, err := config.Load("/etc/vigil/node.yaml") // defaults, then the file
//	if err != nil {
//		return err // every error-severity problem, joined; each is a config.Problem
//	}
//
//	for _, p := range config.Lint("node.yaml") {
//		fmt.Println(p) // node.yaml:7: auth.methd: unknown key; did you mean auth.method?
//	}
//
// Invariants:
//   - Load(path) succeeds exactly when Lint(path) has no error-severity problem, and a Config
//     from Load passes Validate.
//   - A file is read only up to MaxFileSize (1 MiB); a larger file is refused before parsing.
//   - Unknown keys are errors (a typo must not silently keep a default). The known-bad shapes
//     are refused with the reason and what to use instead: auth.method: basic, a username or
//     password anywhere under auth, monitoring or threat_detection switched off without
//     allow_disabled: true next to it. Policy sections (monitoring, threat_detection, response)
//     belong in the cluster policy (vigil policy apply); in the node file they draw a warning
//     and are ignored.
//   - Relative paths: node.data_dir is relative to the directory of the file; auth.key,
//     listen.admin_socket and genesis are relative to node.data_dir, so moving data_dir moves
//     them. Load returns them resolved.
//   - DefaultFile, the commented template printed by `vigil config default`, parses to exactly
//     DefaultConfig() and names every key (tests keep it in sync with the struct).
//   - Pure: Parse does no IO; only Load and Lint read the file.
package config
