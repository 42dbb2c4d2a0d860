package consensus

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigil-mesh/vigil/identity"
)

// Data directory layout (DESIGN.md §8) and the two identity files that bind it to one cluster
// and one node key. They are written once, on first start, and never rewritten.
const (
	raftDirName      = "raft"
	snapshotsDirName = "snapshots"
	stateDirName     = "state"
	keysDirName      = "keys"
	clusterIDFile    = "cluster-id"
	nodeIDFile       = "node-id"
	// raftStateFile records that this node has held raft state. Raft's stable store holds the
	// node's term and vote: a voter that lost them could vote twice in one term and break raft's
	// safety, so a data dir with this file and no raft state is refused, never silently re-joined.
	raftStateFile = "raft-state"
	maxIDFileSize = 256 // bytes; both files hold one short line
)

// prepareDataDir checks that dir belongs to cluster and node, or claims it when it holds neither
// identity file. A mismatch or a damaged identity file is an error naming the directory and both
// values; nothing in dir is touched before the check passes.
func prepareDataDir(dir string, cluster identity.ClusterID, node identity.ID) error {
	storedCluster, cerr := readIDFile(filepath.Join(dir, clusterIDFile))
	storedNode, nerr := readIDFile(filepath.Join(dir, nodeIDFile))
	cMissing, nMissing := errors.Is(cerr, fs.ErrNotExist), errors.Is(nerr, fs.ErrNotExist)
	switch {
	case cMissing && nMissing:
		// A fresh directory, or one with raft state but no identity files: refuse the latter.
		if entries, _ := os.ReadDir(filepath.Join(dir, raftDirName)); len(entries) > 0 {
			return errf(ErrDataDir, "data dir %s holds raft state but no %s file", dir, clusterIDFile)
		}
	case cerr != nil && !cMissing:
		return errf(ErrDataDir, "data dir %s: %v", dir, cerr)
	case nerr != nil && !nMissing:
		return errf(ErrDataDir, "data dir %s: %v", dir, nerr)
	case cMissing || nMissing:
		return errf(ErrDataDir, "data dir %s: one of %s and %s is missing", dir, clusterIDFile, nodeIDFile)
	default:
		if storedCluster != cluster.String() {
			return errf(ErrDataDir, "data dir %s belongs to cluster %s, the genesis is for cluster %s",
				dir, storedCluster, cluster)
		}
		if storedNode != node.String() {
			return errf(ErrDataDir, "data dir %s belongs to node %s, the node key is %s", dir, storedNode, node)
		}
	}
	for _, sub := range []string{"", raftDirName, snapshotsDirName, stateDirName, keysDirName} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("consensus: data dir: %w", err)
		}
	}
	if cMissing {
		if err := writeIDFile(filepath.Join(dir, clusterIDFile), cluster.String()); err != nil {
			return err
		}
		if err := writeIDFile(filepath.Join(dir, nodeIDFile), node.String()); err != nil {
			return err
		}
	}
	return nil
}

// markRaftState records, once, that the node in dir holds raft state.
func markRaftState(dir string) error {
	if hadRaftState(dir) {
		return nil
	}
	return writeIDFile(filepath.Join(dir, raftStateFile), "present")
}

// hadRaftState reports whether markRaftState ran for dir.
func hadRaftState(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, raftStateFile))
	return err == nil
}

// readIDFile returns the trimmed content of a small identity file, refusing oversized ones.
func readIDFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIDFileSize+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxIDFileSize {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxIDFileSize)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeIDFile writes value durably: temp file, fsync, rename, fsync of the directory.
func writeIDFile(path, value string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("consensus: data dir: %w", err)
	}
	_, werr := f.WriteString(value + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("consensus: data dir: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("consensus: data dir: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("consensus: data dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("consensus: data dir: sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}
